package devtemporal

import (
	"context"
	"log/slog"
	"sync/atomic"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// slogLogger passes the server's warnings and errors to an slog.Logger and
// drops the rest. Once quiet is set (the server is stopping, when every
// service warns about its peers going away) it passes only errors. Its Panic
// and Fatal only log: the server must never end the process that embeds it.
type slogLogger struct {
	log   *slog.Logger
	quiet *atomic.Bool
}

var (
	_ log.Logger     = slogLogger{}
	_ log.WithLogger = slogLogger{}
)

func (slogLogger) Debug(string, ...tag.Tag) {}
func (slogLogger) Info(string, ...tag.Tag)  {}

func (l slogLogger) Warn(msg string, tags ...tag.Tag) {
	if !l.quiet.Load() {
		l.emit(slog.LevelWarn, msg, tags)
	}
}

func (l slogLogger) Error(msg string, tags ...tag.Tag)  { l.emit(slog.LevelError, msg, tags) }
func (l slogLogger) DPanic(msg string, tags ...tag.Tag) { l.emit(slog.LevelError, msg, tags) }
func (l slogLogger) Panic(msg string, tags ...tag.Tag)  { l.emit(slog.LevelError, msg, tags) }
func (l slogLogger) Fatal(msg string, tags ...tag.Tag)  { l.emit(slog.LevelError, msg, tags) }

// With returns a logger that adds tags to every record.
func (l slogLogger) With(tags ...tag.Tag) log.Logger {
	return slogLogger{log: slog.New(l.log.Handler().WithAttrs(attrs(tags))), quiet: l.quiet}
}

func (l slogLogger) emit(level slog.Level, msg string, tags []tag.Tag) {
	ctx := context.Background()
	if l.log.Enabled(ctx, level) {
		l.log.LogAttrs(ctx, level, msg, attrs(tags)...)
	}
}

func attrs(tags []tag.Tag) []slog.Attr {
	out := make([]slog.Attr, len(tags))
	for i, t := range tags {
		out[i] = slog.Any(t.Key(), t.Value())
	}
	return out
}
