// Package profiletest holds the integration test of certificate profiles
// (cluster spec profiles, draft-ietf-acme-profiles) on a lab of its own.
package profiletest
