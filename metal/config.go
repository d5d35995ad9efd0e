package metal

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// DeviceKind names the device a run asks for.
type DeviceKind string

// The devices MLXTRAIN_DEVICE accepts.
const (
	DeviceAuto  DeviceKind = ""      // Metal when present, else the CPU
	DeviceCPU   DeviceKind = "cpu"   // host memory and CPU kernels only
	DeviceMetal DeviceKind = "metal" // Apple GPU through Metal (darwin)
	DeviceSim   DeviceKind = "sim"   // the MSL simulator (Linux CI)
)

// Config is the process-wide run-time configuration. It is read once from the
// environment; tests and the CLI may change parts of it through the setters.
type Config struct {
	Device   DeviceKind // MLXTRAIN_DEVICE
	Threads  int        // MLXTRAIN_THREADS: our workers and BLAS threads together
	BLAS     bool       // MLXTRAIN_BLAS (on unless "off", "0" or "false")
	Profile  bool       // MLXTRAIN_PROFILE=1
	CheckNaN bool       // MLXTRAIN_CHECK_NAN=1
	Poison   bool       // MLXTRAIN_POISON=1: fill freed buffers with NaN
}

var (
	cfgOnce sync.Once
	cfg     Config
	cfgErr  error

	threads atomic.Int32
	poison  atomic.Bool
	blasOn  atomic.Bool
)

// Settings returns the configuration read from the environment at first use.
// Invalid values are reported by [ConfigError]; the defaults stand in for them.
func Settings() Config {
	cfgOnce.Do(loadConfig)
	c := cfg
	c.Threads = int(threads.Load())
	c.Poison = poison.Load()
	c.BLAS = blasOn.Load()
	return c
}

// ConfigError reports an MLXTRAIN_* variable that could not be parsed, or nil.
func ConfigError() error {
	cfgOnce.Do(loadConfig)
	return cfgErr
}

func loadConfig() {
	var errs []string
	cfg.Threads = runtime.NumCPU()
	if v := os.Getenv("MLXTRAIN_THREADS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Sprintf("MLXTRAIN_THREADS=%q: want a whole number ≥ 1", v))
		} else {
			cfg.Threads = n
		}
	}
	switch v := DeviceKind(strings.ToLower(os.Getenv("MLXTRAIN_DEVICE"))); v {
	case DeviceAuto, DeviceCPU, DeviceMetal, DeviceSim:
		cfg.Device = v
	default:
		errs = append(errs, fmt.Sprintf("MLXTRAIN_DEVICE=%q: want cpu, metal or sim", string(v)))
	}
	cfg.BLAS = true
	if v, ok := os.LookupEnv("MLXTRAIN_BLAS"); ok {
		on, err := parseSwitch(v)
		if err != nil {
			errs = append(errs, "MLXTRAIN_BLAS: "+err.Error())
		} else {
			cfg.BLAS = on
		}
	}
	for _, s := range []struct {
		name string
		dst  *bool
	}{{"MLXTRAIN_PROFILE", &cfg.Profile}, {"MLXTRAIN_CHECK_NAN", &cfg.CheckNaN}, {"MLXTRAIN_POISON", &cfg.Poison}} {
		if v, ok := os.LookupEnv(s.name); ok {
			on, err := parseSwitch(v)
			if err != nil {
				errs = append(errs, s.name+": "+err.Error())
			}
			*s.dst = on
		}
	}
	threads.Store(int32(cfg.Threads))
	poison.Store(cfg.Poison)
	blasOn.Store(cfg.BLAS)
	profileOn.Store(cfg.Profile)
	checkNaN.Store(cfg.CheckNaN)
	if len(errs) > 0 {
		cfgErr = fmt.Errorf("environment: %s", strings.Join(errs, "; "))
	}
}

func parseSwitch(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "0", "off", "false", "no":
		return false, nil
	case "1", "on", "true", "yes":
		return true, nil
	}
	return false, fmt.Errorf("%q: want 1/on or 0/off", v)
}

// Threads is the number of workers CPU kernels split across (MLXTRAIN_THREADS).
func Threads() int {
	cfgOnce.Do(loadConfig)
	return int(threads.Load())
}

// SetThreads changes the worker count; n < 1 means one.
func SetThreads(n int) {
	cfgOnce.Do(loadConfig)
	threads.Store(int32(max(n, 1)))
}

// BLASEnabled reports whether a system BLAS may be used (MLXTRAIN_BLAS).
func BLASEnabled() bool {
	cfgOnce.Do(loadConfig)
	return blasOn.Load()
}

// SetBLAS turns the system BLAS path on or off.
func SetBLAS(on bool) {
	cfgOnce.Do(loadConfig)
	blasOn.Store(on)
}

// SetPoison makes freed buffers fill with NaN so a read after free cannot pass
// as plausible data. Tests turn it on.
func SetPoison(on bool) {
	cfgOnce.Do(loadConfig)
	poison.Store(on)
}
