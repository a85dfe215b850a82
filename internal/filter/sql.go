package filter

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/antlr/antlr4/runtime/Go/antlr"
	cesql "github.com/cloudevents/sdk-go/sql/v2"
	"github.com/cloudevents/sdk-go/sql/v2/gen"
	"github.com/cloudevents/sdk-go/sql/v2/parser"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/internal/policy"
)

// parseSQL parses a CESQL expression once, for Compile.
//
// sdk-go's parser reports syntax errors without a position, prints lexer
// errors to standard error, and panics on some malformed input (for example
// "type = "). So the input is first run through the generated lexer and
// parser with our own error listener: a syntax error is reported with its
// line and column, and only syntactically valid input reaches parser.Parse,
// whose remaining panics are recovered.
func parseSQL(src string) (expr cesql.Expression, err error) {
	defer func() {
		if r := recover(); r != nil {
			expr, err = nil, fmt.Errorf("parse error: %v", r)
		}
	}()
	// Bound the work before any of it: a filter is parsed on every node
	// at every reload, and evaluated for every matching event.
	if len(src) > policy.MaxFilterLength {
		return nil, fmt.Errorf("the expression is %d bytes; at most %d", len(src), policy.MaxFilterLength)
	}
	tree, err := checkSQLSyntax(src)
	if err != nil {
		return nil, err
	}
	if err := checkSQLCost(tree); err != nil {
		return nil, err
	}
	expr, err = parser.Parse(src)
	if err != nil {
		return nil, err // sdk-go's message already starts with "parse error"
	}
	if expr == nil {
		return nil, errors.New("parse error: no expression")
	}
	return expr, nil
}

// checkSQLSyntax returns src's parse tree, or the first lexer or parser
// error in it, with its position.
func checkSQLSyntax(src string) (gen.ICesqlContext, error) {
	var listener syntaxErrorListener
	// The CESQL lexer matches keywords upper case; sdk-go feeds it the same
	// case-changing stream.
	lexer := gen.NewCESQLParserLexer(parser.NewCaseChangingStream(antlr.NewInputStream(src), true))
	lexer.RemoveErrorListeners()
	lexer.AddErrorListener(&listener)
	p := gen.NewCESQLParserParser(antlr.NewCommonTokenStream(lexer, antlr.TokenDefaultChannel))
	p.RemoveErrorListeners()
	p.AddErrorListener(&listener)
	tree := p.Cesql()
	return tree, listener.err
}

// maxAmplification is how many times the longest attribute of an event a
// string that a filter builds may be: CONCAT(subject, subject) is 2, a
// CONCAT_WS nested in itself grows without bound and is refused.
const maxAmplification = 4

// checkSQLCost refuses an expression that nests too deeply, calls too many
// functions, or can build strings much longer than its inputs, so that no
// filter can take a node's memory or CPU with one matching event. The
// nesting counted is that of function calls, NOT, unary minus and
// parentheses; chains of AND and OR do not nest work.
func checkSQLCost(tree gen.ICesqlContext) error {
	c := filterCost{}
	root, ok := tree.(*gen.CesqlContext)
	if !ok {
		return errors.New("parse error: no expression")
	}
	size := c.expr(root.Expression(), 0)
	switch {
	case c.depth > policy.MaxFilterDepth:
		return fmt.Errorf("expressions nest %d deep; at most %d", c.depth, policy.MaxFilterDepth)
	case c.calls > policy.MaxFilterCalls:
		return fmt.Errorf("%d function calls; at most %d", c.calls, policy.MaxFilterCalls)
	case c.amplification > maxAmplification || size.perInput > maxAmplification:
		return fmt.Errorf("it can build strings %d times as long as the event's attributes; at most %d", max(c.amplification, size.perInput), maxAmplification)
	case c.constant > policy.MaxFilterValue || size.constant > policy.MaxFilterValue:
		return fmt.Errorf("it can build strings of %d bytes from its literals; at most %d", max(c.constant, size.constant), policy.MaxFilterValue)
	}
	return nil
}

// strSize bounds the length of a string an expression yields: perInput
// times the longest attribute, plus constant bytes.
type strSize struct {
	perInput int
	constant int
}

func (a strSize) plus(b strSize) strSize {
	return strSize{perInput: satAdd(a.perInput, b.perInput), constant: satAdd(a.constant, b.constant)}
}

// satAdd adds without overflowing.
func satAdd(a, b int) int {
	if a > math.MaxInt32 || b > math.MaxInt32 {
		return math.MaxInt32
	}
	return min(a+b, math.MaxInt32)
}

// filterCost walks a CESQL parse tree and keeps the worst of what it
// found.
type filterCost struct {
	depth, calls            int
	amplification, constant int
}

// scalar is the size of a number or boolean in its string form.
var scalar = strSize{constant: 20}

func (c *filterCost) expr(e gen.IExpressionContext, depth int) strSize {
	if e == nil {
		return strSize{}
	}
	c.depth = max(c.depth, depth)
	var out strSize
	switch x := e.(type) {
	case *gen.FunctionInvocationExpressionContext:
		c.calls++
		var args []strSize
		if list, ok := x.FunctionParameterList().(*gen.FunctionParameterListContext); ok && list != nil {
			for _, a := range list.AllExpression() {
				args = append(args, c.expr(a, depth+1))
			}
		}
		out = functionSize(strings.ToUpper(x.FunctionIdentifier().GetText()), args)
	case *gen.UnaryLogicExpressionContext:
		c.expr(x.Expression(), depth+1)
		out = scalar
	case *gen.UnaryNumericExpressionContext:
		c.expr(x.Expression(), depth+1)
		out = scalar
	case *gen.SubExpressionContext:
		out = c.expr(x.Expression(), depth+1)
	case *gen.AtomExpressionContext:
		switch a := x.Atom().(type) {
		case *gen.IdentifierAtomContext:
			out = strSize{perInput: 1}
		case *gen.StringAtomContext:
			out = strSize{constant: len(a.GetText())}
		default:
			out = scalar
		}
	default:
		// Operators yield booleans and integers; walk their operands.
		for _, child := range e.GetChildren() {
			if sub, ok := child.(gen.IExpressionContext); ok {
				c.expr(sub, depth)
			}
			if set, ok := child.(*gen.SetExpressionContext); ok {
				for _, m := range set.AllExpression() {
					c.expr(m, depth)
				}
			}
		}
		out = scalar
	}
	c.amplification = max(c.amplification, out.perInput)
	c.constant = max(c.constant, out.constant)
	return out
}

// functionSize bounds what a CESQL function yields from arguments of the
// given sizes: CONCAT and CONCAT_WS add up, the other string functions
// yield at most their first argument, the rest yield scalars.
func functionSize(name string, args []strSize) strSize {
	switch name {
	case "CONCAT":
		var out strSize
		for _, a := range args {
			out = out.plus(a)
		}
		return out
	case "CONCAT_WS":
		if len(args) == 0 {
			return strSize{}
		}
		var out strSize
		for _, a := range args[1:] {
			out = out.plus(a)
		}
		for range max(len(args)-2, 0) {
			out = out.plus(args[0])
		}
		return out
	case "LOWER", "UPPER", "TRIM", "LEFT", "RIGHT", "SUBSTRING", "STRING":
		if len(args) == 0 {
			return strSize{}
		}
		return args[0].plus(scalar)
	}
	return scalar
}

// syntaxErrorListener keeps the first syntax error ANTLR reports.
type syntaxErrorListener struct {
	antlr.DefaultErrorListener
	err error
}

func (l *syntaxErrorListener) SyntaxError(_ antlr.Recognizer, _ any, line, column int, msg string, _ antlr.RecognitionException) {
	if l.err == nil {
		// ANTLR columns count from 0; people count from 1.
		l.err = fmt.Errorf("parse error at line %d, column %d: %s", line, column+1, msg)
	}
}

// evalSQL reports whether expr evaluates to boolean TRUE for e. Evaluation
// errors, non-boolean results and panics inside sdk-go are all false.
func evalSQL(expr cesql.Expression, e *event.Event) (matched bool) {
	var in event.Event // nil e: an event with no attributes
	if e != nil {
		in = *e
		if c, ok := e.Context.(*event.EventContextV1); ok {
			in.Context = sqlContext{c}
		}
	}
	defer func() {
		if recover() != nil {
			matched = false
		}
	}()
	v, err := expr.Evaluate(in)
	if err != nil {
		return false
	}
	b, ok := v.(bool)
	return ok && b
}

// sqlContext is the context CESQL evaluates against: the event's own, except
// that GetExtensions returns the extension map itself. sdk-go's
// EventContextV1.GetExtensions copies the map, and CESQL calls it for every
// extension it reads, which made CESQL allocate on every match. CESQL only
// reads the map.
type sqlContext struct {
	*event.EventContextV1
}

func (c sqlContext) GetExtensions() map[string]any {
	return c.Extensions
}
