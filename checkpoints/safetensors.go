package checkpoints

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// The safetensors format (Hugging Face): an 8-byte little-endian length N, N bytes
// of a JSON object, then the data region. The object maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]}, offsets relative to the start of
// the data region; the optional key "__metadata__" holds a string-to-string map.
// The tensors must cover the data region exactly: no gaps, no overlaps, nothing
// after the last one. Elements are little-endian and row-major, like our tensors on
// every platform we build for (amd64, arm64).

// metadataKey is the header key that holds free-form string metadata.
const metadataKey = "__metadata__"

// maxHeader bounds the JSON header, as the reference implementation does, so a
// hostile length cannot make us allocate gigabytes before anything is checked.
const maxHeader = 100_000_000

var dtypeNames = map[autodiff.DType]string{
	autodiff.Float32:  "F32",
	autodiff.Float64:  "F64",
	autodiff.Float16:  "F16",
	autodiff.BFloat16: "BF16",
	autodiff.Int32:    "I32",
	autodiff.Uint32:   "U32",
}

// otherDTypes are dtypes of the format that have no autodiff counterpart: reading
// them is a clear "not supported" rather than "unknown".
var otherDTypes = []string{"BOOL", "U8", "I8", "I16", "U16", "I64", "U64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"}

func parseDType(s string) (autodiff.DType, error) {
	for d, name := range dtypeNames {
		if name == s {
			return d, nil
		}
	}
	if slices.Contains(otherDTypes, s) {
		return 0, fmt.Errorf("dtype %s is not supported (want F32, F64, F16, BF16, I32 or U32)", s)
	}
	return 0, fmt.Errorf("unknown dtype %q (want F32, F64, F16, BF16, I32 or U32)", s)
}

// File is the contents of a safetensors file: its tensors and metadata. The tensors
// are the caller's: [File.Release] gives their storage back.
type File struct {
	// Tensors maps each name to its tensor.
	Tensors map[string]*autodiff.Tensor
	// Metadata is the "__metadata__" map; empty when the file has none.
	Metadata map[string]string

	source string // the path, for error messages
}

// Names returns the tensor names, sorted.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for n := range f.Tensors {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Get returns the named tensor, or an error naming the file and the tensor.
func (f *File) Get(name string) (*autodiff.Tensor, error) {
	t, ok := f.Tensors[name]
	if !ok {
		return nil, fmt.Errorf("safetensors %s: no tensor %q", f.source, name)
	}
	return t, nil
}

// Release gives every tensor's storage back to the pool.
func (f *File) Release() {
	for _, t := range f.Tensors {
		t.Release()
	}
}

// Load reads a safetensors file, checking every header field against the file
// before it allocates anything. The data region is read once, straight into the
// tensors. Errors name the file and, where one is at fault, the tensor.
func Load(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("safetensors %s: not a regular file", path)
	}
	f, err := read(bufio.NewReaderSize(fd, 1<<20), st.Size())
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	f.source = path
	return f, nil
}

// Read reads a safetensors file of size bytes from r (see [Load]).
func Read(r io.Reader, size int64) (*File, error) {
	f, err := read(r, size)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f.source = "(reader)"
	return f, nil
}

// entry is one tensor of a header.
type entry struct {
	name       string
	dtype      autodiff.DType
	shape      []int
	begin, end uint64
}

func read(r io.Reader, size int64) (*File, error) {
	if size < 8 {
		return nil, fmt.Errorf("file is %d bytes, too short for the 8-byte header length", max(size, 0))
	}
	var lenBuf [8]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, fmt.Errorf("reading the header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > uint64(size-8) {
		return nil, fmt.Errorf("header length %d exceeds the file (%d bytes after the length)", n, size-8)
	}
	if n > maxHeader {
		return nil, fmt.Errorf("header length %d exceeds the limit of %d bytes", n, maxHeader)
	}
	header := make([]byte, n)
	if _, err := io.ReadFull(r, header); err != nil {
		return nil, fmt.Errorf("reading the %d-byte header: %w", n, unexpectedEOF(err))
	}
	dataLen := uint64(size-8) - n
	entries, meta, err := parseHeader(header, dataLen)
	if err != nil {
		return nil, err
	}
	f := &File{Tensors: make(map[string]*autodiff.Tensor, len(entries)), Metadata: meta}
	for _, e := range entries { // in offset order: one sequential pass over the data
		t := autodiff.Empty(e.dtype, e.shape...)
		f.Tensors[e.name] = t
		if e.end == e.begin {
			continue
		}
		if _, err := io.ReadFull(r, t.Bytes()); err != nil {
			f.Release()
			return nil, fmt.Errorf("tensor %q: reading data bytes [%d, %d): %w", e.name, e.begin, e.end, unexpectedEOF(err))
		}
	}
	return f, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("the file is truncated")
	}
	return err
}

// parseHeader checks the JSON header against a data region of dataLen bytes and
// returns the tensors sorted by offset.
func parseHeader(header []byte, dataLen uint64) ([]entry, map[string]string, error) {
	if !utf8.Valid(header) {
		return nil, nil, errors.New("header is not valid UTF-8")
	}
	if len(header) == 0 || header[0] != '{' {
		return nil, nil, errors.New("header does not start with '{'")
	}
	fields, err := objectFields(header)
	if err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	meta := map[string]string{}
	var entries []entry
	for _, fl := range fields {
		if fl.key == metadataKey {
			if meta, err = parseMetadata(fl.value); err != nil {
				return nil, nil, fmt.Errorf("header %s: %w", metadataKey, err)
			}
			continue
		}
		e, err := parseEntry(fl.key, fl.value)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", fl.key, err)
		}
		entries = append(entries, e)
	}
	// Truncation first: it is the likeliest fault and the clearest message.
	for _, e := range entries {
		if e.end > dataLen {
			return nil, nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] reach past the data region (%d bytes): the file is truncated", e.name, e.begin, e.end, dataLen)
		}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if a.begin != b.begin {
			return cmpU64(a.begin, b.begin)
		}
		if a.end != b.end {
			return cmpU64(a.end, b.end)
		}
		return strings.Compare(a.name, b.name)
	})
	var pos uint64
	for i, e := range entries {
		switch {
		case e.begin < pos:
			p := entries[i-1]
			return nil, nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q [%d, %d]", e.name, e.begin, e.end, p.name, p.begin, p.end)
		case e.begin > pos:
			return nil, nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] leave bytes [%d, %d) of the data region to no tensor", e.name, e.begin, e.end, pos, e.begin)
		}
		pos = e.end
	}
	if pos != dataLen {
		return nil, nil, fmt.Errorf("bytes [%d, %d) of the data region belong to no tensor", pos, dataLen)
	}
	return entries, meta, nil
}

func cmpU64(a, b uint64) int {
	if a < b {
		return -1
	}
	return 1
}

func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	meta := map[string]string{}
	if string(raw) == "null" {
		return meta, nil
	}
	fields, err := objectFields(raw)
	if err != nil {
		return nil, err
	}
	for _, fl := range fields {
		var s *string
		if err := json.Unmarshal(fl.value, &s); err != nil || s == nil {
			return nil, fmt.Errorf("key %q: value %s is not a string", fl.key, clip(fl.value))
		}
		meta[fl.key] = *s
	}
	return meta, nil
}

func parseEntry(name string, raw json.RawMessage) (entry, error) {
	e := entry{name: name}
	fields, err := objectFields(raw)
	if err != nil {
		return e, err
	}
	var dtype *string
	var shape, offsets []uint64
	for _, fl := range fields {
		switch fl.key {
		case "dtype":
			if err := json.Unmarshal(fl.value, &dtype); err != nil || dtype == nil {
				return e, fmt.Errorf("dtype %s is not a string", clip(fl.value))
			}
		case "shape":
			if shape, err = uints(fl.value); err != nil {
				return e, fmt.Errorf("shape: %w", err)
			}
		case "data_offsets":
			if offsets, err = uints(fl.value); err != nil {
				return e, fmt.Errorf("data_offsets: %w", err)
			}
			if len(offsets) != 2 {
				return e, fmt.Errorf("data_offsets %s: want [begin, end]", clip(fl.value))
			}
		default:
			return e, fmt.Errorf("unknown field %q (want dtype, shape, data_offsets)", fl.key)
		}
	}
	switch {
	case dtype == nil:
		return e, errors.New("no dtype")
	case shape == nil:
		return e, errors.New("no shape")
	case offsets == nil:
		return e, errors.New("no data_offsets")
	}
	if e.dtype, err = parseDType(*dtype); err != nil {
		return e, err
	}
	e.begin, e.end = offsets[0], offsets[1]
	if e.end < e.begin {
		return e, fmt.Errorf("data_offsets [%d, %d] end before they begin", e.begin, e.end)
	}
	// The element count times the element size, refusing any overflow on the way
	// (as the reference does): a shape like [2^40, 2^40, 0] is an error, not zero.
	size := uint64(e.dtype.Size())
	e.shape = make([]int, len(shape))
	for i, d := range shape {
		if d > math.MaxInt {
			return e, fmt.Errorf("shape %s: dimension %d is too large", clip([]byte(uintsJSON(shape))), d)
		}
		hi, lo := bits.Mul64(size, d)
		if hi != 0 || lo > math.MaxInt {
			return e, fmt.Errorf("shape %s of %s overflows", clip([]byte(uintsJSON(shape))), *dtype)
		}
		size = lo
		e.shape[i] = int(d)
	}
	if e.end-e.begin != size {
		return e, fmt.Errorf("data_offsets [%d, %d] hold %d bytes but shape %s of %s needs %d", e.begin, e.end, e.end-e.begin, uintsJSON(shape), *dtype, size)
	}
	return e, nil
}

// uints reads a JSON array of non-negative integers written as plain digits.
func uints(raw json.RawMessage) ([]uint64, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, fmt.Errorf("%s is not an array of integers", clip(raw))
	}
	out := make([]uint64, len(items))
	for i, it := range items {
		v, err := strconv.ParseUint(string(it), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s is not a non-negative integer", clip(it))
		}
		out[i] = v
	}
	return out, nil
}

func uintsJSON(v []uint64) string {
	parts := make([]string, len(v))
	for i, d := range v {
		parts[i] = strconv.FormatUint(d, 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// clip shortens a JSON fragment for an error message.
func clip(b []byte) string {
	const most = 40
	if len(b) > most {
		return string(b[:most]) + "…"
	}
	return string(b)
}

type field struct {
	key   string
	value json.RawMessage
}

// objectFields splits a JSON object into its members in order, refusing duplicate
// keys (encoding/json would silently keep the last) and anything after the object
// but whitespace.
func objectFields(raw []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s is not a JSON object", clip(raw))
	}
	var out []field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key, _ := tok.(string) // the decoder only yields strings in key position
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("invalid JSON at key %q: %w", key, err)
		}
		out = append(out, field{key, v})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the object")
	}
	return out, nil
}

// tensorInfo is a header entry as written; the field order is the JSON order.
type tensorInfo struct {
	DType   string    `json:"dtype"`
	Shape   []int     `json:"shape"`
	Offsets [2]uint64 `json:"data_offsets"`
}

type named struct {
	name string
	t    *autodiff.Tensor
}

// Write writes tensors and metadata (nil or empty for none) in the safetensors
// format. The output depends only on the contents, not on map order: header keys
// are sorted; the data is laid out by element size, largest first, then by name, so
// every tensor starts at a multiple of its element size; and the header is padded
// with spaces to a multiple of 8 bytes, so the data region starts 8-byte aligned
// (what the reference writer does).
func Write(w io.Writer, tensors map[string]*autodiff.Tensor, metadata map[string]string) error {
	if err := write(w, tensors, metadata); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

func write(w io.Writer, tensors map[string]*autodiff.Tensor, metadata map[string]string) error {
	list := make([]named, 0, len(tensors))
	for name, t := range tensors {
		switch {
		case name == "":
			return errors.New("empty tensor name")
		case name == metadataKey:
			return fmt.Errorf("%q is reserved and cannot name a tensor", metadataKey)
		case !utf8.ValidString(name):
			return fmt.Errorf("tensor name %q is not valid UTF-8", name)
		case t == nil:
			return fmt.Errorf("tensor %q is nil", name)
		case t.Released():
			return fmt.Errorf("tensor %q has been released", name)
		}
		if _, ok := dtypeNames[t.DType()]; !ok {
			return fmt.Errorf("tensor %q: dtype %s has no safetensors name", name, t.DType())
		}
		list = append(list, named{name, t})
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("metadata %q is not valid UTF-8", k)
		}
	}
	slices.SortFunc(list, func(a, b named) int {
		if sa, sb := a.t.DType().Size(), b.t.DType().Size(); sa != sb {
			return sb - sa
		}
		return strings.Compare(a.name, b.name)
	})
	header := make(map[string]any, len(list)+1)
	if len(metadata) > 0 {
		header[metadataKey] = metadata
	}
	var pos uint64
	for _, e := range list {
		n := uint64(e.t.Len() * e.t.DType().Size())
		header[e.name] = tensorInfo{
			DType:   dtypeNames[e.t.DType()],
			Shape:   append([]int{}, e.t.Shape()...),
			Offsets: [2]uint64{pos, pos + n},
		}
		pos += n
	}
	var hb bytes.Buffer
	hb.Write(make([]byte, 8))
	enc := json.NewEncoder(&hb) // sorts map keys; SetEscapeHTML keeps '<' '>' '&' as they are
	enc.SetEscapeHTML(false)
	if err := enc.Encode(header); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	hb.Truncate(hb.Len() - 1) // Encode's newline
	for hb.Len()%8 != 0 {
		hb.WriteByte(' ')
	}
	buf := hb.Bytes()
	binary.LittleEndian.PutUint64(buf, uint64(len(buf)-8))
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("%w", err)
	}
	for _, e := range list {
		if _, err := w.Write(e.t.Bytes()); err != nil {
			return fmt.Errorf("tensor %q: %w", e.name, err)
		}
	}
	return nil
}

// Save writes a safetensors file (see [Write]) atomically: to a temporary file in
// the same directory, synced to disk, then renamed over path. A crash leaves either
// the old file or the new one, never half of one.
func Save(path string, tensors map[string]*autodiff.Tensor, metadata map[string]string) error {
	if err := writeAtomic(path, func(w io.Writer) error { return write(w, tensors, metadata) }); err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	return nil
}

// writeAtomic fills a temporary file next to path, syncs it, renames it to path
// and syncs the directory.
func writeAtomic(path string, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	if _, err := fillFile(tmp, fill); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return syncDir(dir)
}

// writeSafetensors writes a safetensors file in place (the caller owns a temporary
// directory) and syncs it; it returns the file's size.
func writeSafetensors(path string, tensors map[string]*autodiff.Tensor, metadata map[string]string) (int64, error) {
	return writeFile(path, func(w io.Writer) error { return write(w, tensors, metadata) })
}

// writeFile creates path, fills it, syncs it and closes it, returning its size.
func writeFile(path string, fill func(io.Writer) error) (int64, error) {
	fd, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	return fillFile(fd, fill)
}

// fillFile writes into fd, syncs and closes it, returning the bytes written.
func fillFile(fd *os.File, fill func(io.Writer) error) (int64, error) {
	cw := &countingWriter{w: fd}
	bw := bufio.NewWriterSize(cw, 1<<20)
	err := fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = fd.Sync()
	}
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// syncDir makes a directory's entries (creations, renames) durable.
func syncDir(dir string) error {
	fd, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = fd.Sync()
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	return err
}
