package handlers_test

import (
	"sync"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

var (
	sharedSpansOnce sync.Once
	sharedSpans     *tracetest.SpanRecorder
)

// recordSpans sends the spans of the server and the broker to one recorder
// for the whole test binary, and returns what was ended since the call.
// One, because OpenTelemetry's global provider hands the tracers made
// before it was set (the packages' own) to the first provider set, never a
// later one: a second test's recorder would see nothing.
func recordSpans() func() []sdktrace.ReadOnlySpan {
	sharedSpansOnce.Do(func() {
		sharedSpans = tracetest.NewSpanRecorder()
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sharedSpans)))
	})
	n := len(sharedSpans.Ended())
	return func() []sdktrace.ReadOnlySpan { return sharedSpans.Ended()[n:] }
}
