// Package filter evaluates CloudEvents Subscriptions API filters (exact,
// prefix, suffix, all, any, not and CESQL) against events.
//
// Attribute values are compared in their canonical string form, as the
// HTTP binding writes them: booleans "true"/"false", integers in decimal,
// timestamps RFC 3339 in UTC, binary as base64, URIs as given. Names and
// values are case-sensitive, and an attribute the event lacks makes exact,
// prefix and suffix false. A CESQL expression is true only when it
// evaluates to boolean TRUE; evaluation errors and non-boolean results are
// false.
//
// Compile turns one subscription's filters into a Filter; Set indexes many
// subscriptions' rules on event type so that matching an event evaluates
// only the rules that could match it.
package filter
