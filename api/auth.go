package api

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/gin-gonic/gin"
	"sigs.k8s.io/yaml"
)

// Role is an RBAC role. Each role can do everything the ones below it can.
type Role int

// The roles, weakest first.
const (
	RoleNone     Role = iota
	RoleViewer        // reads: status, WAL, events, fleet, settings, audit
	RoleOperator      // + ingest and logs
	RoleAdmin         // + failover and settings writes
)

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

func parseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("role %q is not viewer, operator or admin", s)
}

// Tokens maps the SHA-256 of a bearer token to who holds it. The tokens
// themselves are never stored or logged. The set can be replaced while the
// API serves (Replace, on SIGHUP); a request is checked against the set in
// effect when it arrives.
type Tokens struct {
	byDigest atomic.Pointer[map[string]tokenEntry]
}

// Replace makes t accept exactly the tokens of from.
func (t *Tokens) Replace(from *Tokens) { t.byDigest.Store(from.byDigest.Load()) }

// Len returns how many tokens t accepts.
func (t *Tokens) Len() int { return len(*t.byDigest.Load()) }

type tokenEntry struct {
	name string
	role Role
}

// tokensFile is the --tokens-file YAML.
type tokensFile struct {
	Tokens []struct {
		Name   string `json:"name"`
		Role   string `json:"role"`
		SHA256 string `json:"sha256"`
	} `json:"tokens"`
}

// LoadTokens reads a --tokens-file: tokens: [{name, role, sha256}], sha256
// being the hex digest of the token (e.g. `printf %s "$TOKEN" | sha256sum`).
func LoadTokens(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tokens-file: %w", err)
	}
	var f tokensFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("--tokens-file %s: %v (expected tokens: [{name, role, sha256}])", path, err)
	}
	byDigest := map[string]tokenEntry{}
	for i, e := range f.Tokens {
		role, err := parseRole(e.Role)
		if err != nil {
			return nil, fmt.Errorf("--tokens-file %s: token %d (%q): %v", path, i, e.Name, err)
		}
		d := strings.ToLower(strings.TrimSpace(e.SHA256))
		if raw, err := hex.DecodeString(d); err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("--tokens-file %s: token %d (%q): sha256 must be 64 hex digits", path, i, e.Name)
		}
		if e.Name == "" {
			return nil, fmt.Errorf("--tokens-file %s: token %d has no name (names appear in the audit log)", path, i)
		}
		if _, dup := byDigest[d]; dup {
			return nil, fmt.Errorf("--tokens-file %s: token %d (%q) repeats another token's sha256", path, i, e.Name)
		}
		byDigest[d] = tokenEntry{name: e.Name, role: role}
	}
	if len(byDigest) == 0 {
		return nil, fmt.Errorf("--tokens-file %s lists no tokens; every request would be refused", path)
	}
	t := &Tokens{}
	t.byDigest.Store(&byDigest)
	return t, nil
}

// lookup returns who holds token.
func (t *Tokens) lookup(token string) (tokenEntry, bool) {
	sum := sha256.Sum256([]byte(token))
	e, ok := (*t.byDigest.Load())[hex.EncodeToString(sum[:])]
	return e, ok
}

// Context keys set by the auth middleware.
const ctxWho = "autonomy.who"

// require returns middleware admitting requests whose token has at least
// role. With no tokens configured, auth is off and everyone is "anonymous".
func (s *Server) require(role Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.cfg.Tokens == nil {
			c.Set(ctxWho, "anonymous")
			return
		}
		h := c.GetHeader("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			c.Header("WWW-Authenticate", `Bearer realm="autonomy"`)
			writeError(c, http.StatusUnauthorized, "unauthorized", "send a token: Authorization: Bearer <token> (autonomyctl --token or AUTONOMY_TOKEN)")
			return
		}
		e, ok := s.cfg.Tokens.lookup(tok)
		if !ok {
			c.Header("WWW-Authenticate", `Bearer realm="autonomy", error="invalid_token"`)
			writeError(c, http.StatusUnauthorized, "unauthorized", "the token is not known to this cluster")
			return
		}
		if e.role < role {
			writeError(c, http.StatusForbidden, "forbidden", fmt.Sprintf("token %q has role %s; this needs %s", e.name, e.role, role))
			return
		}
		c.Set(ctxWho, e.name)
	}
}

func who(c *gin.Context) string {
	if v, ok := c.Get(ctxWho); ok {
		return v.(string)
	}
	return "anonymous"
}
