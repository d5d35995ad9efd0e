package recipes

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// An Error is one problem with a recipe.
type Error struct {
	// Source is where the bad value came from: the recipe file's name,
	// "--set key=value" for an override, or "" for a recipe filled in Go.
	Source string
	// Line is the 1-based line in Source (0 when not known, as for a default
	// value or a TOML syntax error without a position).
	Line int
	// Key is the dotted key path, such as "train.iters" ("" for a syntax error).
	Key string
	// Msg says what is wrong; it names the key itself.
	Msg string
}

// Error returns "source:line: msg", dropping the parts that are unknown.
func (e *Error) Error() string {
	switch {
	case e.Source != "" && e.Line > 0:
		return e.Source + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
	case e.Source != "":
		return e.Source + ": " + e.Msg
	}
	return e.Msg
}

// Errors is every problem found in a recipe, in the order found; Load, Parse,
// Set and Validate return one (as an error) when they find any.
type Errors []*Error

// Error returns the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// orNil returns es as an error, nil when empty.
func (es Errors) orNil() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// editDistance is the number of single-byte insertions, deletions,
// substitutions and transpositions of adjacent bytes that turn a into b (the
// optimal string alignment distance: "trian" is 1 from "train").
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j]; three rows suffice.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// closeEnough reports whether a distance d between a word of length n and a
// candidate is small enough to suggest it: a third of the word, at least 1.
func closeEnough(d, n int) bool { return d <= max(1, n/3) }

// nearest returns the candidate closest to word by edit distance if it is
// close enough, else "". Ties go to the earlier candidate.
func nearest(word string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(word), c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || !closeEnough(bestD, len(word)) {
		return ""
	}
	return best
}

// choiceMsg says that got is not one of choices, suggesting the nearest.
func choiceMsg(got string, choices []string) string {
	quoted := make([]string, len(choices))
	for i, c := range choices {
		quoted[i] = strconv.Quote(c)
	}
	msg := fmt.Sprintf("%q is not one of %s", got, strings.Join(quoted, ", "))
	if s := nearest(got, choices); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg
}

// aliases maps key names other tools use (Hugging Face config.json, nanoGPT,
// PyTorch) to ours, for suggestions.
var aliases = map[string]string{
	"lr":                          "optimizer.learning_rate",
	"hidden_size":                 "model.d_model",
	"n_embd":                      "model.d_model",
	"dim":                         "model.d_model",
	"num_hidden_layers":           "model.layers",
	"n_layer":                     "model.layers",
	"n_layers":                    "model.layers",
	"num_attention_heads":         "model.heads",
	"n_head":                      "model.heads",
	"n_heads":                     "model.heads",
	"num_key_value_heads":         "model.kv_heads",
	"n_kv_heads":                  "model.kv_heads",
	"intermediate_size":           "model.ffn_width",
	"rms_norm_eps":                "model.norm_eps",
	"layer_norm_eps":              "model.norm_eps",
	"layer_norm_epsilon":          "model.norm_eps",
	"max_position_embeddings":     "model.max_positions",
	"sliding_window":              "model.window",
	"tie_word_embeddings":         "model.tie_embeddings",
	"initializer_range":           "model.init_std",
	"init_scheme":                 "model.init",
	"num_experts":                 "model.moe.experts",
	"num_experts_per_tok":         "model.moe.top_k",
	"max_steps":                   "train.iters",
	"steps":                       "train.iters",
	"num_iters":                   "train.iters",
	"block_size":                  "train.max_seq_length",
	"seq_len":                     "train.max_seq_length",
	"context_length":              "train.max_seq_length",
	"gradient_accumulation_steps": "train.grad_accumulation_steps",
	"grad_clip":                   "train.max_grad_norm",
	"eval_every":                  "train.steps_per_eval",
	"eval_interval":               "train.steps_per_eval",
	"log_interval":                "train.steps_per_report",
	"warmup_steps":                "lr_schedule.warmup",
	"min_lr":                      "lr_schedule.final_lr",
	"lora_rank":                   "lora.rank",
	"lora_alpha":                  "lora.scale",
	"lora_dropout":                "lora.dropout",
	"adapter_path":                "train.out",
	"out_dir":                     "train.out",
	"fine_tune":                   "train.fine_tune_type",
}

// suggestKey returns the known key the unknown path most likely meant, or "":
// a sibling within a small edit distance ("train.iter" → "train.iters"); else
// a key of the same name in another table ("train.learning_rate" →
// "optimizer.learning_rate"); else a known alias ("train.lr" →
// "optimizer.learning_rate"); else a close name in another table.
func suggestKey(path []string, known [][]string) string {
	name := path[len(path)-1]
	parent := strings.Join(path[:len(path)-1], ".")
	var siblings, elsewhere []string
	for _, k := range known {
		if len(k) == len(path) && strings.Join(k[:len(k)-1], ".") == parent {
			siblings = append(siblings, k[len(k)-1])
		}
	}
	if s := nearest(name, siblings); s != "" {
		return joinKey(append(append([]string{}, path[:len(path)-1]...), s))
	}
	var names []string
	for _, k := range known {
		if k[len(k)-1] == name {
			elsewhere = append(elsewhere, joinKey(k))
		}
		names = append(names, k[len(k)-1])
	}
	if len(elsewhere) > 0 {
		sort.Strings(elsewhere)
		return elsewhere[0]
	}
	if a, ok := aliases[strings.ToLower(name)]; ok {
		return a
	}
	if s := nearest(name, names); s != "" {
		for _, k := range known {
			if k[len(k)-1] == s {
				return joinKey(k)
			}
		}
	}
	return ""
}

// joinKey writes a key path in dotted form, quoting pieces that are not bare
// keys.
func joinKey(path []string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		if isBareKey(p) {
			parts[i] = p
		} else {
			parts[i] = quoteTOML(p)
		}
	}
	return strings.Join(parts, ".")
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
