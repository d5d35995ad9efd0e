package metal

import "fmt"

func init() {
	// "cumsum" (n elements), "linear_scan" (n elements): as the other
	// memory-bound ops, a launch pays once the work clearly exceeds its cost.
	Tunings["cumsum"] = Tuning{0: {1 << 15}, 9: {1 << 14}}
	Tunings["linear_scan"] = Tuning{0: {1 << 15}, 9: {1 << 14}}
}

// ScanOp selects the associative operator of [RunScan].
type ScanOp uint8

// The scan operators: float32 sum, product, maximum and minimum, and int32 sum.
const (
	ScanSum ScanOp = iota
	ScanProd
	ScanMax
	ScanMin
	ScanSumInt32
)

var scanKernels = [...]string{ScanSum: "scan_sum_f32", ScanProd: "scan_prod_f32", ScanMax: "scan_max_f32",
	ScanMin: "scan_min_f32", ScanSumInt32: "scan_sum_i32"}

// Flags of the scan kernels (shaders/scan.metal).
const (
	scanExclusive uint32 = 1 << iota
	scanReverse
	scanOut
	scanTotals
	scanSeeds
	scanInit
	scanShift
	scanSerial
)

// scanPer is the elements a thread scans in registers (SCAN_PER); scanMaxThreads
// the largest threadgroup, so a block holds up to scanPer·scanMaxThreads
// elements of a row.
const (
	scanPer        = 4
	scanMaxThreads = 256
)

// A strided axis (Inner ≥ scanSerialInner) with many rows (≥ scanSerialRows,
// and at least a quarter of the length) is scanned a row per thread, walking
// it (SCAN_SERIAL): neighbouring threads then read neighbouring addresses, and
// there are enough rows to fill the GPU. Estimates, as the tunings.
const (
	scanSerialInner = 32
	scanSerialRows  = 1024
)

type scanParams struct{ Rows, N, Inner, NBlocks, Flags uint32 }

// ScanLayout places a scan: the tensor is viewed as (Outer, N, Inner) and
// scanned along N, from the end when Reverse; Exclusive scans start from the
// identity (element t combines elements before t).
type ScanLayout struct {
	Outer, N, Inner    int
	Exclusive, Reverse bool
}

func (l ScanLayout) flags() uint32 {
	var f uint32
	if l.Exclusive {
		f |= scanExclusive
	}
	if l.Reverse {
		f |= scanReverse
	}
	return f
}

// scanKernel is one scan kernel family: the kernel over the layout and the one
// scanning its block totals (elemBytes each).
type scanKernel struct {
	main, totals string
	elemBytes    int
	extra        []Arg // bound after the parameters (the affine scan's b)
}

// RunScan writes y, the inclusive (or exclusive) prefix scan of x under op
// along the middle axis of layout. x and y hold float32, or int32 for
// ScanSumInt32; y may not be x. Many strided rows take one launch, a thread
// walking each row; otherwise a row that fits a threadgroup's block (1024
// elements) takes one launch, a longer row three (block totals, their scan,
// the seeded block scans) and more when the totals themselves outgrow a block.
func RunScan(d Compute, op ScanOp, y, x *Buffer, l ScanLayout) error {
	if int(op) >= len(scanKernels) {
		return fmt.Errorf("scan: operator %d", op)
	}
	k := scanKernel{main: scanKernels[op], totals: scanKernels[op], elemBytes: 4}
	if err := scanCheck(k.main, l, need{"y", y, l.Outer * l.N * l.Inner, false}, need{"x", x, l.Outer * l.N * l.Inner, false}); err != nil {
		return err
	}
	return runScan(d, k, y, x, nil, l, l.flags())
}

// RunLinearScan writes h, the linear recurrence h_t = a_t·h_{t−1} + b_t along
// the middle axis of layout (its Exclusive and Reverse must be false), from
// h_{−1} = h0 (Outer·Inner values) or 0 when h0 is nil. The scan composes the
// affine maps (a_t, b_t) with the kernels of [RunScan].
func RunLinearScan(d Compute, h, a, b, h0 *Buffer, l ScanLayout) error {
	const kernel = "scan_affine_f32"
	n := l.Outer * l.N * l.Inner
	if l.Exclusive || l.Reverse {
		return fmt.Errorf("%s: a linear recurrence runs forward and inclusive", kernel)
	}
	if err := scanCheck(kernel, l, need{"h", h, n, false}, need{"a", a, n, false}, need{"b", b, n, false},
		need{"h0", h0, l.Outer * l.Inner, true}); err != nil {
		return err
	}
	flags := uint32(0)
	if h0 != nil {
		flags |= scanInit
	}
	k := scanKernel{main: kernel, totals: "scan_affine_pairs_f32", elemBytes: 8, extra: []Arg{In(6, b)}}
	return runScan(d, k, h, a, h0, l, flags)
}

// RunLinearScanBackward writes the gradients of [RunLinearScan] from g = ∂L/∂h:
// db (which is u_t = g_t + a_{t+1}·u_{t+1}, a reverse linear scan), da_t =
// u_t·h_{t−1} and, when dh0 is not nil, dh0 = a_0·u_0. h is the forward's
// result and h0 its start (nil for zeros). Two launches or more (the scan,
// then one for da and dh0).
func RunLinearScanBackward(d Compute, da, db, dh0, g, a, h, h0 *Buffer, l ScanLayout) error {
	const kernel = "linear_scan_grad_f32"
	n := l.Outer * l.N * l.Inner
	rows := l.Outer * l.Inner
	if l.Exclusive || l.Reverse {
		return fmt.Errorf("%s: a linear recurrence runs forward and inclusive", kernel)
	}
	if err := scanCheck(kernel, l, need{"da", da, n, false}, need{"db", db, n, false}, need{"dh0", dh0, rows, true},
		need{"g", g, n, false}, need{"a", a, n, false}, need{"h", h, n, false}, need{"h0", h0, rows, true}); err != nil {
		return err
	}
	if n == 0 {
		if dh0 != nil && rows > 0 {
			return RunZeroAt(d, dh0, 0, rows) // no steps: h0 reaches nothing
		}
		return nil
	}
	k := scanKernel{main: "scan_affine_f32", totals: "scan_affine_pairs_f32", elemBytes: 8, extra: []Arg{In(6, g)}}
	if err := runScan(d, k, db, a, nil, l, scanReverse|scanShift); err != nil {
		return err
	}
	var keep []*Buffer
	defer func() { releaseBuffers(keep) }()
	p := scanParams{Rows: uint32(rows), N: uint32(l.N), Inner: uint32(l.Inner)}
	if h0 != nil {
		p.Flags |= scanInit
	}
	if dh0 != nil {
		p.Flags |= scanTotals
	}
	h0b, err := placeholder(d, h0, &keep)
	if err != nil {
		return err
	}
	dh0b, err := placeholder(d, dh0, &keep)
	if err != nil {
		return err
	}
	return d.Dispatch(&Launch{Kernel: kernel, Groups: [3]int{groupsFor(l.N, elementwiseGroup), rows, 1}, Threads: [3]int{elementwiseGroup, 1, 1},
		Args: []Arg{Out(0, da), Out(1, dh0b), In(2, db), In(3, a), In(4, h), In(5, h0b), Params(6, p)}})
}

func scanCheck(kernel string, l ScanLayout, needs ...need) error {
	if err := checkCount(kernel, l.Outer, l.N, l.Inner); err != nil {
		return err
	}
	return checkBuffers(kernel, needs...)
}

// scanThreads is the threadgroup size for rows of n elements: enough SIMD
// groups to cover the row, at most scanMaxThreads.
func scanThreads(n int) int {
	return min(scanMaxThreads, max(1, groupsFor(groupsFor(n, scanPer), 32))*32)
}

// runScan runs a scan kernel family over layout l: many strided rows a row per
// thread; else one launch when a row fits a block, else reduce the blocks to
// totals, scan the totals exclusively (recursively), and scan the blocks from
// their prefixes.
func runScan(d Compute, k scanKernel, y, x, init *Buffer, l ScanLayout, flags uint32) error {
	rows := l.Outer * l.Inner
	if rows == 0 || l.N == 0 {
		return nil
	}
	var keep []*Buffer
	defer func() { releaseBuffers(keep) }()
	init, err := placeholder(d, init, &keep)
	if err != nil {
		return err
	}
	// totals and seeds of a single launch: placeholders the kernel does not
	// touch (apart, as a buffer written must be bound once)
	unused, err := placeholder(d, nil, &keep)
	if err != nil {
		return err
	}
	unusedOut, err := placeholder(d, nil, &keep)
	if err != nil {
		return err
	}
	threads := scanThreads(l.N)
	nb := groupsFor(l.N, threads*scanPer)
	p := scanParams{Rows: uint32(rows), N: uint32(l.N), Inner: uint32(l.Inner), NBlocks: uint32(nb), Flags: flags | scanOut}
	launch := func(p scanParams, totals, seeds *Buffer) error {
		groups, threads := [3]int{nb, rows, 1}, [3]int{threads, 1, 1}
		if p.Flags&scanSerial != 0 {
			groups, threads = [3]int{groupsFor(rows, scanMaxThreads), 1, 1}, [3]int{scanMaxThreads, 1, 1}
		}
		return d.Dispatch(&Launch{Kernel: k.main, Groups: groups, Threads: threads,
			Args: append([]Arg{Out(0, y), In(1, x), Out(2, totals), In(3, seeds), In(4, init), Params(5, p)}, k.extra...)})
	}
	if l.Inner >= scanSerialInner && rows >= scanSerialRows && l.N <= 4*rows {
		p.NBlocks, p.Flags = 1, p.Flags|scanSerial
		return launch(p, unusedOut, unused)
	}
	if nb == 1 {
		return launch(p, unusedOut, unused)
	}
	totals, err := d.NewBuffer(k.elemBytes * rows * nb)
	if err != nil {
		return fmt.Errorf("%s: scratch: %w", k.main, err)
	}
	keep = append(keep, totals) // released now, the scratch returns to its pool once the launches using it complete
	seeds, err := d.NewBuffer(k.elemBytes * rows * nb)
	if err != nil {
		return fmt.Errorf("%s: scratch: %w", k.main, err)
	}
	keep = append(keep, seeds)
	reduce := p
	reduce.Flags = flags&^scanExclusive | scanTotals
	if err := launch(reduce, totals, unused); err != nil {
		return err
	}
	tk := scanKernel{main: k.totals, totals: k.totals, elemBytes: k.elemBytes}
	if err := runScan(d, tk, seeds, totals, nil, ScanLayout{Outer: rows, N: nb, Inner: 1}, scanExclusive); err != nil {
		return err
	}
	p.Flags |= scanSeeds
	return launch(p, totals, seeds)
}
