package client

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// HTTPError is an answer with status ≥ 400.
type HTTPError struct {
	Status     int    // HTTP status code
	Code       string // the body's "error" code, or "http_<status>" when the body has none
	Message    string // the body's "message", or the start of a non-JSON body
	Method     string
	URL        string
	Leader     string // X-Autonomy-Leader, when the node named one
	RetryAfter string // Retry-After, when present (429, 503)
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, e.Code)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// UnreachableError says that no endpoint could be reached. Errs holds one
// transport error (normally a *url.Error) per endpoint tried, in order; its
// text is theirs, one per line.
type UnreachableError struct {
	Errs []error
}

func (e *UnreachableError) Error() string {
	s := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		s[i] = err.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap exposes the per-endpoint errors to errors.Is and errors.As.
func (e *UnreachableError) Unwrap() []error { return e.Errs }

// URLs returns the URLs that could not be reached, in order.
func (e *UnreachableError) URLs() []string {
	var out []string
	for _, err := range e.Errs {
		var ue *url.Error
		if errors.As(err, &ue) {
			out = append(out, ue.URL)
		}
	}
	return out
}
