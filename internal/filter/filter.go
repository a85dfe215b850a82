// Package filter evaluates CloudEvents Subscriptions API filters (exact,
// prefix, suffix, all, any, not and CESQL) against events.
package filter
