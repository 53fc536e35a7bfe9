//go:build tools

// Package tools pins the newest lego the module proxy serves, built for the
// drills and tests (scripts/deps.sh): `go install` cannot build it (the
// proxy refuses its version list), a module that imports it can.
package tools

import _ "github.com/go-acme/lego/v5"
