// Package attention holds scaled dot-product attention: the reference, flash
// attention forward and backward, grouped-query attention, sliding windows, RoPE and
// the KV caches that generation uses. Tensors are BSHD unless a layout flag says BHSD.
package attention
