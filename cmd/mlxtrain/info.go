package main

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mlxtrain/mlxtrain/metal"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, Go version and platform",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "mlxtrain %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

func devicesCommand() *cli.Command {
	return &cli.Command{
		Name:  "devices",
		Usage: "print the detected devices, settings and the path each op takes",
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			s := metal.Settings()
			device := string(s.Device)
			if device == "" {
				device = "auto"
			}
			fmt.Fprintf(w, "host: %s, %d threads (requested device: %s)\n", runtime.GOARCH, s.Threads, device)
			if d, err := metal.Accelerator(); err != nil {
				fmt.Fprintf(w, "accelerator: none (%v)\n", err)
			} else if d == nil {
				fmt.Fprintln(w, "accelerator: none")
			} else {
				f := d.Facts()
				fmt.Fprintf(w, "accelerator: %s (family Apple%d, simdgroup_matrix %v, MSL %s, threadgroup memory %d B, %d threads/group, SIMD %d, simulated %v)\n",
					f.Name, f.Family, f.SimdgroupMatrix(), f.LanguageVersion, f.MaxThreadgroupMemory, f.MaxThreadsPerGroup, f.SIMDWidth, f.Simulated)
			}
			fmt.Fprintf(w, "threads: %d   blas: %v   profile: %v   check_nan: %v\n", s.Threads, s.BLAS, s.Profile, s.CheckNaN)
			fmt.Fprintf(w, "%-22s %s\n", "op", "implementations (first usable wins; thresholds per dim)")
			for _, op := range metal.Kernels.List() {
				var parts []string
				for _, im := range op.Impls {
					p := im.Path.String()
					var th []string
					for d, m := range im.Min {
						if m > 0 {
							th = append(th, fmt.Sprintf("%s≥%d", op.Dims[d], m))
						}
					}
					if len(th) > 0 {
						p += "[" + strings.Join(th, ",") + "]"
					}
					switch {
					case im.Disabled != "":
						p += "(disabled: " + im.Disabled + ")"
					case !im.Available:
						p += "(unavailable)"
					}
					parts = append(parts, p)
				}
				fmt.Fprintf(w, "%-22s %s\n", op.Name, strings.Join(parts, " → "))
			}
			return nil
		},
	}
}
