// Package advanced holds mixture-of-experts layers (routing, dispatch, load
// balancing) and state-space layers (associative and selective scan, causal conv1d).
package advanced
