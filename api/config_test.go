package api

import (
	"strings"
	"testing"
	"time"
)

// TestConfig_Validate: the defaults pass, and each bad field is refused by
// Validate and by NewHandler, with its name and value in the error.
func TestConfig_Validate(t *testing.T) {
	def := DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"zero body", func(c *Config) { c.MaxBodyBytes = 0 }, "MaxBodyBytes=0"},
		{"negative body", func(c *Config) { c.MaxBodyBytes = -1 }, "MaxBodyBytes=-1"},
		{"zero timeout", func(c *Config) { c.IngestTimeout = 0 }, "IngestTimeout=0s"},
		{"negative timeout", func(c *Config) { c.IngestTimeout = -time.Second }, "IngestTimeout=-1s"},
		{"zero batch", func(c *Config) { c.MaxEventsPerRequest = 0 }, "MaxEventsPerRequest=0"},
		{"no logger", func(c *Config) { c.Logger = nil }, "Logger is nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error naming %q", err, tc.want)
			}
			if h, err := NewHandler(c, ingestBackend{}.backends()); err == nil || h != nil {
				t.Fatalf("NewHandler accepted the config: %v", err)
			}
		})
	}
}

// TestNewHandler_refusesMissingBackend: every role is required.
func TestNewHandler_refusesMissingBackend(t *testing.T) {
	b := ingestBackend{}.backends()
	b.Log = nil
	if _, err := NewHandler(DefaultConfig(), b); err == nil || !strings.Contains(err.Error(), "Backends.Log is nil") {
		t.Fatalf("got %v", err)
	}
}
