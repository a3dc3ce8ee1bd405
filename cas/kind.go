package cas

import "fmt"

// kindError is an error of a kind (a sentinel such as ErrNotFound, which
// callers test with errors.Is) whose message is its own: it says what was
// not found, and where, without "not found" repeated after it.
type kindError struct {
	err  error // the message, and what it wraps
	kind error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

// Errorf formats a message as fmt.Errorf does, as an error of kind.
func Errorf(kind error, format string, a ...any) error {
	return &kindError{err: fmt.Errorf(format, a...), kind: kind}
}
