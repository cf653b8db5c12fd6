// Package telemetry owns keybroker's OpenTelemetry traces: whether they are
// on (only when an OTLP endpoint is configured, through the standard
// OTEL_* variables), the exporter and the W3C trace-context propagation.
// Off, nothing is installed and the global tracer provider stays the
// no-op one, so instrumented code costs nothing measurable.
//
// What spans may carry is narrow on purpose: routes, status codes, Vault
// operation names, SQL text with its placeholders, scopes and providers.
// Never a key, a token, a request body or a query's arguments.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/keybroker/keybroker/internal/runtime/buildinfo"
)

// Enabled says whether the environment asks for traces: an OTLP endpoint
// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT) and
// neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none.
func Enabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// Setup installs the OTLP/HTTP exporter (configured by the standard OTEL_*
// variables: endpoint, headers, TLS, timeout; the sampler by
// OTEL_TRACES_SAMPLER, parent-based always-on by default) as the global
// tracer provider, and the W3C trace-context and baggage propagators. It
// returns the provider (nil when traces are off) and a shutdown that
// flushes what is buffered.
func Setup(ctx context.Context, mode string) (trace.TracerProvider, func(context.Context) error, error) {
	if !Enabled() {
		return nil, func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("OpenTelemetry OTLP exporter: %w", err)
	}
	tp := NewProvider(sdktrace.NewBatchSpanProcessor(exp), mode)
	Install(tp)
	return tp, tp.Shutdown, nil
}

// NewProvider is the SDK's tracer provider over processor, with
// keybroker's resource (service name, version, mode); tests pass an
// in-memory exporter's processor.
func NewProvider(processor sdktrace.SpanProcessor, mode string) *sdktrace.TracerProvider {
	bi := buildinfo.Get()
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(serviceName()), semconv.ServiceVersion(bi.Version),
		attribute.String("keybroker.mode", mode)))
	if err != nil {
		// Only a schema URL clash; the default resource is then enough.
		res = resource.Default()
	}
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(processor), sdktrace.WithResource(res))
}

// Install makes tp the global tracer provider and W3C trace context the
// propagation.
func Install(tp trace.TracerProvider) {
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}

func serviceName() string {
	if n := os.Getenv("OTEL_SERVICE_NAME"); n != "" {
		return n
	}
	return "keybroker"
}

// Shutdown flushes and stops tp within timeout; errors are joined with the
// flush's.
func Shutdown(shutdown func(context.Context) error, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}
