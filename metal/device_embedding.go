package metal

import (
	"fmt"
	"unsafe"
)

type embeddingParams struct{ Tokens, Vocab, Dim uint32 }

// embeddingGrid sizes a grid of one thread per (column, row) of rows × dim.
func embeddingGrid(rows, dim int) (groups, threads [3]int) {
	t := min(256, max(1, groupsFor(dim, 32))*32)
	return [3]int{groupsFor(dim, t), rows, 1}, [3]int{t, 1, 1}
}

// RunEmbedding gathers rows of table (vocab × dim): out[i, :] = table[ids[i], :]
// for the tokens int32 ids. One launch (embed_gather_f32). An id outside
// [0, vocab) gives a row of NaN: check ids first.
func RunEmbedding(d Compute, out, table, ids *Buffer, tokens, vocab, dim int) error {
	const kernel = "embed_gather_f32"
	if err := checkCount(kernel, tokens, dim); err != nil {
		return err
	}
	if err := checkCount(kernel, vocab, dim); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"out", out, tokens * dim, false}, need{"table", table, vocab * dim, false},
		need{"ids", ids, tokens, false}); err != nil {
		return err
	}
	if tokens == 0 || dim == 0 {
		return nil
	}
	groups, threads := embeddingGrid(tokens, dim)
	return d.Dispatch(&Launch{
		Kernel:  kernel,
		Groups:  groups,
		Threads: threads,
		Args: []Arg{Out(0, out), In(1, table), In(2, ids),
			Params(3, embeddingParams{uint32(tokens), uint32(vocab), uint32(dim)})},
	})
}

// RunEmbeddingBackward writes the gradient of [RunEmbedding] for the upstream
// gradient dout (tokens × dim): dtable[v, :] = Σ dout[i, :] over the tokens i with
// ids[i] = v, added to dtable's contents when accumulate is set, else replacing
// them (rows no token names become 0).
//
// Race-free and deterministic without float atomics: the host waits for ids, sorts
// the tokens by id stably (a counting sort, O(tokens + vocab)) and uploads the
// order; then one launch (embed_scatter_f32) gives each element of dtable a thread
// that adds its tokens' rows in token order, so the result equals a sequential
// scatter-add (autodiff.ScatterAddKernel) bit for bit. An id outside [0, vocab)
// is an error.
func RunEmbeddingBackward(d Compute, dtable, dout, ids *Buffer, tokens, vocab, dim int, accumulate bool) error {
	const kernel = "embed_scatter_f32"
	if err := checkCount(kernel, tokens, dim); err != nil {
		return err
	}
	if err := checkCount(kernel, vocab+1, dim); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"dtable", dtable, vocab * dim, false}, need{"dout", dout, tokens * dim, false},
		need{"ids", ids, tokens, false}); err != nil {
		return err
	}
	if vocab == 0 || dim == 0 {
		return nil
	}
	ids.Wait()
	var idv []int32
	if tokens > 0 {
		idv = unsafe.Slice((*int32)(ids.Pointer()), tokens)
	}
	order, err := d.NewBuffer(4 * max(tokens, 1))
	if err != nil {
		return fmt.Errorf("%s: scratch: %w", kernel, err)
	}
	defer order.Release()
	starts, err := d.NewBuffer(4 * (vocab + 1))
	if err != nil {
		return fmt.Errorf("%s: scratch: %w", kernel, err)
	}
	defer starts.Release()
	ov := unsafe.Slice((*int32)(order.Pointer()), max(tokens, 1))
	sv := unsafe.Slice((*int32)(starts.Pointer()), vocab+1)
	if err := countingSort(ov[:tokens], sv, idv); err != nil {
		return fmt.Errorf("%s: %w", kernel, err)
	}
	table := Out(0, dtable)
	if accumulate {
		table = InOut(0, dtable)
	}
	groups, threads := embeddingGrid(vocab, dim)
	return d.Dispatch(&Launch{
		Kernel:    kernel,
		Constants: []Constant{{Index: 0, Value: accumulate}},
		Groups:    groups,
		Threads:   threads,
		Args: []Arg{table, In(1, dout), In(2, order), In(3, starts),
			Params(4, embeddingParams{uint32(tokens), uint32(vocab), uint32(dim)})},
	})
}

// countingSort writes into order the token indices sorted by id, stably, and into
// starts (vocab+1 entries) where each id's tokens begin.
func countingSort(order, starts, ids []int32) error {
	vocab := len(starts) - 1
	clear(starts)
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("id %d of token %d outside [0, %d)", id, i, vocab)
		}
		starts[id+1]++
	}
	for v := 1; v <= vocab; v++ {
		starts[v] += starts[v-1]
	}
	// next[v] = starts[v] as tokens are placed: starts is restored from the end below.
	for i, id := range ids {
		order[starts[id]] = int32(i)
		starts[id]++
	}
	for v := vocab; v > 0; v-- {
		starts[v] = starts[v-1]
	}
	starts[0] = 0
	return nil
}
