package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mlxtrain/mlxtrain/metal"
	// The devices register themselves with metal when linked in: Metal on a Mac,
	// the simulator wherever clang-16 is installed (MLXTRAIN_DEVICE=sim).
	_ "github.com/mlxtrain/mlxtrain/metal/mtl"
	_ "github.com/mlxtrain/mlxtrain/metal/sim"
)

func devicesCommand() *cli.Command {
	return &cli.Command{
		Name:  "devices",
		Usage: "print the detected devices, settings, the path each op takes and (--selftest) the kernels' self-tests",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "selftest", Usage: "run every device kernel's self-test now (they otherwise run at an op's first use) and print the results"},
		},
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
				fmt.Fprintf(w, "accelerator: %s (family Apple%d, simdgroup_matrix %v, unified memory %v, working set %s, MSL %s, threadgroup memory %d B, %d threads/group, SIMD %d, simulated %v)\n",
					f.Name, f.Family, f.SimdgroupMatrix(), f.UnifiedMemory, metal.HumanBytes(int64(f.WorkingSet)), f.LanguageVersion,
					f.MaxThreadgroupMemory, f.MaxThreadsPerGroup, f.SIMDWidth, f.Simulated)
			}
			fmt.Fprintf(w, "threads: %d   blas: %v   profile: %v   check_nan: %v\n", s.Threads, s.BLAS, s.Profile, s.CheckNaN)
			ops := metal.Kernels.List()
			if c.Bool("selftest") {
				ops = metal.Kernels.SelfTest()
			}
			writeOps(w, ops)
			if none := withoutDeviceImpl(ops); len(none) > 0 {
				fmt.Fprintf(w, "no Metal kernel (CPU only): %s\n", strings.Join(none, ", "))
			}
			if c.Bool("selftest") {
				if !metal.Offloading() {
					fmt.Fprintln(w, "self-tests: no accelerator open (MLXTRAIN_DEVICE=metal on a Mac, sim with clang-16), nothing to test")
				}
				for _, line := range metal.SelfTestReport(ops) {
					fmt.Fprintln(w, "self-test "+line)
				}
			}
			return nil
		},
	}
}

// writeOps prints each op's implementations in the order they are tried, with
// their thresholds, and marks the one a call above every threshold takes.
func writeOps(w io.Writer, ops []metal.OpInfo) {
	width := len("op")
	for _, op := range ops {
		width = max(width, len(op.Name))
	}
	fmt.Fprintf(w, "%-*s %s\n", width, "op", "implementations (first usable wins; thresholds per dim; * = taken above them)")
	for _, op := range ops {
		var parts []string
		chosen := false
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
			case !chosen:
				p = "*" + p
				chosen = true
			}
			parts = append(parts, p)
		}
		fmt.Fprintf(w, "%-*s %s\n", width, op.Name, strings.Join(parts, " → "))
	}
}

// withoutDeviceImpl lists the ops that have no device (Metal) implementation.
// An op X whose device path is registered as its own op "X_metal" (the
// selective scan's CPU kernels and its device kernels have different dims) has
// one.
func withoutDeviceImpl(ops []metal.OpInfo) []string {
	var out []string
	names := map[string]bool{}
	for _, op := range ops {
		names[op.Name] = true
	}
	for _, op := range ops {
		if names[op.Name+"_metal"] {
			continue
		}
		has := false
		for _, im := range op.Impls {
			has = has || im.Path == metal.PathMetal
		}
		if !has {
			out = append(out, op.Name)
		}
	}
	return out
}
