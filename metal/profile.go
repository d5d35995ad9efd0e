package metal

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

var (
	profileOn   atomic.Bool
	checkNaN    atomic.Bool
	selfTesting atomic.Int32 // self-tests running: RecordOp skips their ops
	profMu      sync.Mutex
	profStats   = map[profKey]*ProfileEntry{}
)

type profKey struct {
	op   string
	path Path
}

// ProfileEntry is what the profiler counted for one op on one path.
type ProfileEntry struct {
	Op    string
	Path  Path
	Calls int64
	Time  time.Duration
	Bytes int64
}

// Profiling reports whether MLXTRAIN_PROFILE is on.
func Profiling() bool {
	cfgOnce.Do(loadConfig)
	return profileOn.Load()
}

// SetProfiling turns op profiling on or off.
func SetProfiling(on bool) {
	cfgOnce.Do(loadConfig)
	profileOn.Store(on)
}

// CheckingNaN reports whether MLXTRAIN_CHECK_NAN is on.
func CheckingNaN() bool {
	cfgOnce.Do(loadConfig)
	return checkNaN.Load()
}

// SetCheckNaN turns the NaN/Inf check after every op on or off.
func SetCheckNaN(on bool) {
	cfgOnce.Do(loadConfig)
	checkNaN.Store(on)
}

// RecordOp adds one call of op on path that took d and touched bytes bytes.
func RecordOp(op string, path Path, d time.Duration, bytes int64) {
	if selfTesting.Load() > 0 {
		return
	}
	k := profKey{op, path}
	profMu.Lock()
	e := profStats[k]
	if e == nil {
		e = &ProfileEntry{Op: op, Path: path}
		profStats[k] = e
	}
	e.Calls++
	e.Time += d
	e.Bytes += bytes
	profMu.Unlock()
}

// ProfileSnapshot returns the counts so far, slowest first.
func ProfileSnapshot() []ProfileEntry {
	profMu.Lock()
	out := make([]ProfileEntry, 0, len(profStats))
	for _, e := range profStats {
		out = append(out, *e)
	}
	profMu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Time != out[j].Time {
			return out[i].Time > out[j].Time
		}
		return out[i].Op < out[j].Op
	})
	return out
}

// ResetProfile forgets every count.
func ResetProfile() {
	profMu.Lock()
	profStats = map[profKey]*ProfileEntry{}
	profMu.Unlock()
}

// WriteProfile prints the profile as a table: op, path, calls, total time, time per
// call, bytes.
func WriteProfile(w io.Writer) {
	entries := ProfileSnapshot()
	if len(entries) == 0 {
		fmt.Fprintln(w, "profile: no ops recorded")
		return
	}
	var total time.Duration
	for _, e := range entries {
		total += e.Time
	}
	fmt.Fprintf(w, "%-24s %-9s %9s %12s %10s %7s %12s\n", "op", "path", "calls", "time", "per call", "share", "bytes")
	for _, e := range entries {
		fmt.Fprintf(w, "%-24s %-9s %9d %12s %10s %6.1f%% %12s\n", e.Op, e.Path, e.Calls,
			e.Time.Round(time.Microsecond), (e.Time / time.Duration(e.Calls)).Round(10*time.Nanosecond),
			100*float64(e.Time)/float64(max(total, 1)), HumanBytes(e.Bytes))
	}
	if n := Launches(); n > 0 {
		fmt.Fprintf(w, "device launches: %d (device paths record their launches and return: their time is the encoding, not the work)\n", n)
	}
}

// HumanBytes formats a byte count with a binary unit.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
