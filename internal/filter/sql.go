package filter

import (
	"errors"
	"fmt"

	"github.com/antlr/antlr4/runtime/Go/antlr"
	cesql "github.com/cloudevents/sdk-go/sql/v2"
	"github.com/cloudevents/sdk-go/sql/v2/gen"
	"github.com/cloudevents/sdk-go/sql/v2/parser"
	"github.com/cloudevents/sdk-go/v2/event"
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
	if err := checkSQLSyntax(src); err != nil {
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

// checkSQLSyntax returns the first lexer or parser error in src, with its
// position, or nil.
func checkSQLSyntax(src string) error {
	var listener syntaxErrorListener
	// The CESQL lexer matches keywords upper case; sdk-go feeds it the same
	// case-changing stream.
	lexer := gen.NewCESQLParserLexer(parser.NewCaseChangingStream(antlr.NewInputStream(src), true))
	lexer.RemoveErrorListeners()
	lexer.AddErrorListener(&listener)
	p := gen.NewCESQLParserParser(antlr.NewCommonTokenStream(lexer, antlr.TokenDefaultChannel))
	p.RemoveErrorListeners()
	p.AddErrorListener(&listener)
	p.Cesql()
	return listener.err
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
