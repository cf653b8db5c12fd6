package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envAnnotation marks a flag with the environment variable that sets it.
const envAnnotation = "keybroker_env"

// envFlags registers flags that an environment variable may set: the
// variable, when set, takes the place of the default (a flag on the command
// line still wins), and a value that does not parse stops the command with
// an error (see applyEnv).
type envFlags struct{ fs *pflag.FlagSet }

func flagsOf(cmd *cobra.Command) envFlags { return envFlags{cmd.Flags()} }

func (e envFlags) bind(name, env string) {
	_ = e.fs.SetAnnotation(name, envAnnotation, []string{env})
}

func (e envFlags) String(p *string, name, env, def, usage string) {
	e.fs.StringVar(p, name, def, usage+" ("+env+")")
	e.bind(name, env)
}

func (e envFlags) Bool(p *bool, name, env string, def bool, usage string) {
	e.fs.BoolVar(p, name, def, usage+" ("+env+")")
	e.bind(name, env)
}

func (e envFlags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	e.fs.DurationVar(p, name, def, usage+" ("+env+", e.g. 30s)")
	e.bind(name, env)
}

func (e envFlags) Float64(p *float64, name, env string, def float64, usage string) {
	e.fs.Float64Var(p, name, def, usage+" ("+env+")")
	e.bind(name, env)
}

func (e envFlags) Int(p *int, name, env string, def int, usage string) {
	e.fs.IntVar(p, name, def, usage+" ("+env+")")
	e.bind(name, env)
}

func (e envFlags) Strings(p *[]string, name, env string, usage string) {
	e.fs.StringSliceVar(p, name, nil, usage+" ("+env+", comma-separated)")
	e.bind(name, env)
}

// applyEnv sets every flag of cmd that was not given on the command line
// from its environment variable, if set. A bad value is an error, not a
// silent fallback to the default.
func applyEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		names := f.Annotations[envAnnotation]
		if err != nil || f.Changed || len(names) == 0 {
			return
		}
		v, ok := os.LookupEnv(names[0])
		if !ok {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = fmt.Errorf("%s=%q: not a valid --%s: %w", names[0], v, f.Name, serr)
		}
	})
	return err
}
