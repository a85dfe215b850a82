// Package e2e tests Herald end to end: real nodes on loopback against one
// embedded Temporal server per test binary, real SQLite stores and real
// webhook receivers.
package e2e
