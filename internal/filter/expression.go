package filter

// Expression is one CloudEvents Subscriptions API filter expression, in the
// specification's JSON shape. Exactly one dialect is set.
type Expression struct {
	Exact  map[string]string `json:"exact,omitempty"`
	Prefix map[string]string `json:"prefix,omitempty"`
	Suffix map[string]string `json:"suffix,omitempty"`
	All    []Expression      `json:"all,omitempty"`
	Any    []Expression      `json:"any,omitempty"`
	Not    *Expression       `json:"not,omitempty"`
	SQL    string            `json:"sql,omitempty"`
}
