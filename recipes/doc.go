// Package recipes is the training recipe: a Go struct filled from TOML and
// validated, which builds the model, data and optimizer, and runs the fit
// loop.
//
// A Recipe is plain data. Fill it from Go (start from Defaults) or from a
// TOML file (Load, Parse), change single keys as the command line's --set
// does (Set, Apply), check it (Validate), and print every effective value as
// TOML that reads back to the same recipe (WriteTOML, Effective). Default is
// the embedded recipe that `mlxtrain fit` runs when given none.
//
// Errors name the file, the line and the key, and for an unknown key the
// nearest valid one:
//
//	recipe.toml:12: unknown key train.iter (did you mean train.iters?)
//	recipe.toml:7: train.iters: want an integer, got string "100"
//	recipe.toml:4: model.heads = 3 does not divide model.d_model = 128 (or set model.head_dim)
//	--set train.batch_size=0: train.batch_size must be 1 to 1048576, got 0
//
// # Schema
//
// Every key, its default (Defaults) and what it accepts. The sections are
// TOML tables; keys follow mlx-lm's names where it has them. [model.ssm] and
// [model.moe] are validated even when model.layer_pattern uses neither.
//
//	| key | default | accepts | meaning |
//	|---|---|---|---|
//	| `model.family` | `"gpt"` | `"gpt"`, `"llama"` | preset: sets ffn, ffn_mult, norm, norm_eps, positions, rope_theta, bias, tie_embeddings (keys given beside it win) |
//	| `model.from` | `""` | run/checkpoint dir | start from these weights (fine-tune); given architecture keys must match its config.json, omitted ones are taken from it; its tokenizer is used |
//	| `model.vocab_size` | `0` | 0 to 2^22; ≥ tokenizer size | embedding rows; 0 = the tokenizer's size |
//	| `model.d_model` | `256` | 1 to 65536 | residual width |
//	| `model.layers` | `4` | 1 to 4096 | blocks |
//	| `model.heads` | `4` | 1 to 4096; divides d_model unless head_dim is set | query heads |
//	| `model.kv_heads` | `0` | 0 to 4096; divides heads | key/value heads (GQA); 0 = heads |
//	| `model.head_dim` | `0` | 0 to 65536; even with rope | head width; 0 = d_model/heads |
//	| `model.ffn` | `"gelu"` | `"gelu"`, `"gelu_tanh"`, `"relu"`, `"swiglu"` | feed-forward activation (swiglu is gated) |
//	| `model.ffn_width` | `0` | 0 to 65536 | feed-forward hidden width; 0 = ffn_mult·d_model rounded up to a multiple of 8 |
//	| `model.ffn_mult` | `4.0` | > 0 | used when ffn_width is 0 (llama preset: 8/3) |
//	| `model.norm` | `"layernorm"` | `"layernorm"`, `"rmsnorm"` | normalization |
//	| `model.norm_eps` | `1e-05` | (0, 1) | normalization epsilon |
//	| `model.positions` | `"learned"` | `"learned"`, `"rope"`, `"none"` | position encoding |
//	| `model.rope_theta` | `10000.0` | > 0 | RoPE base |
//	| `model.rope_interleaved` | `false` | bool | rotate adjacent pairs (GPT-J) instead of halves (Llama) |
//	| `model.max_positions` | `0` | 0 to 2^20; ≥ train.max_seq_length | longest sequence (learned table size); 0 = train.max_seq_length |
//	| `model.window` | `0` | 0 to 2^20 | sliding attention window; 0 = full causal |
//	| `model.bias` | `true` | bool | biases in linear layers |
//	| `model.tie_embeddings` | `true` | bool | output head shares the input embedding |
//	| `model.dropout` | `0.0` | [0, 1) | residual dropout: the embedding output and each mixer and feed-forward output (no attention-weight dropout) |
//	| `model.init_std` | `0.02` | (0, 1] | std of the initial weights |
//	| `model.init` | `"normal"` | `"normal"`, `"pytorch"` | GPT-2's N(0, init_std²) with scaled residual projections, or torch.nn's defaults (uniform ±1/√fan_in linears, N(0, 1) embeddings) |
//	| `model.layer_pattern` | `["attention:dense"]` | non-empty list of "mixer[:ffn]", mixer attention/ssm, ffn dense/moe; its length divides layers | per-layer mixer and feed-forward, repeated to cover the layers |
//	| `model.dtype` | `"float32"` | `"float32"` | parameter dtype |
//	| `model.ssm.d_state` | `16` | 1 to 1024 | SSM state size per channel |
//	| `model.ssm.d_conv` | `4` | 1 to 64 | causal conv width |
//	| `model.ssm.expand` | `2` | 1 to 64 | inner width / d_model |
//	| `model.ssm.dt_rank` | `0` | 0 to 65536 | step-size projection rank; 0 = ceil(d_model/16) |
//	| `model.moe.experts` | `8` | 1 to 4096 | routed experts |
//	| `model.moe.top_k` | `2` | 1 to experts | experts per token |
//	| `model.moe.shared_experts` | `0` | 0 to 4096 | experts every token uses |
//	| `model.moe.capacity_factor` | `1.25` | ≥ 0 | expert capacity factor; 0 = no limit (dropless) |
//	| `model.moe.router` | `"softmax"` | `"softmax"`, `"sigmoid"` | gating function |
//	| `model.moe.aux_loss_coef` | `0.01` | ≥ 0 | load-balancing loss weight |
//	| `model.moe.z_loss_coef` | `0.001` | ≥ 0 | router z-loss weight |
//	| `data.train` | `[]` | paths/globs (a string is a list of one) | training files (.txt, .jsonl, .parquet); needed unless data.task.kind is set, not with it |
//	| `data.valid` | `[]` | paths/globs | validation files; not with valid_split or a task |
//	| `data.test` | `[]` | paths/globs | test files; not with test_split or a task |
//	| `data.format` | `"auto"` | `"auto"`, `"text"`, `"completions"`, `"chat"` | JSONL/Parquet record shape; auto = from the first record |
//	| `data.text_field` | `"text"` | non-empty | text format's field/column |
//	| `data.prompt_field` | `"prompt"` | non-empty | completions format's prompt field |
//	| `data.completion_field` | `"completion"` | non-empty | completions format's completion field |
//	| `data.messages_field` | `"messages"` | non-empty | chat format's messages field |
//	| `data.valid_split` | `0.0` | [0, 1); with test_split < 1 | fraction of training documents held out for validation (seeded by train.seed) |
//	| `data.test_split` | `0.0` | [0, 1) | fraction held out for test |
//	| `data.tokenizer` | `"byte"` | `"byte"`, `"bpe"`, path ending in .json | byte-level, a BPE trained on the training split, or a tokenizer.json; tasks need "byte" |
//	| `data.bpe_vocab_size` | `1024` | 259 to 2^22 | BPE vocabulary (256 bytes + 3 specials + merges) |
//	| `data.pack` | `true` | bool | concatenate examples with EOS into rows; false = one example per row |
//	| `data.task.kind` | `""` | `""`, `"addition"`, `"copy"`, `"reverse"`, `"sort"`, `"mqar"` | built-in synthetic task; "" = train on files |
//	| `data.task.max_digits` | `3` | 1 to 18 | addition: operand digits |
//	| `data.task.min_len` | `1` | 1 to 1024 | copy/reverse/sort: shortest sequence |
//	| `data.task.max_len` | `8` | min_len to 1024 | copy/reverse/sort: longest sequence |
//	| `data.task.alphabet` | `""` | distinct printable ASCII but = \| + | sequence symbols / mqar keys; "" = task default (digits; a-z for mqar) |
//	| `data.task.values` | `""` | as alphabet, disjoint from it | mqar values; "" = digits |
//	| `data.task.pairs` | `8` | 1 to the number of keys | mqar: key-value pairs per example |
//	| `data.task.queries` | `4` | 1 to pairs | mqar: queries per example |
//	| `data.task.held_out` | `500` | 1 to 65536 and what the task allows (a tenth of each class) | held-out problems, never trained on |
//	| `data.task.examples` | `0` | ≥ 0 | training examples drawn; 0 = 200000 |
//	| `train.iters` | `1000` | ≥ 0 | optimizer steps (mlx-lm) |
//	| `train.epochs` | `0` | ≥ 0 | if > 0, passes over the data instead of iters: iters = ⌈epochs × packed rows / (batch_size × grad_accumulation_steps)⌉ (not with an endless task) |
//	| `train.batch_size` | `16` | 1 to 2^20 | rows per micro-batch |
//	| `train.max_seq_length` | `256` | 1 to 2^20 | tokens per row |
//	| `train.grad_accumulation_steps` | `1` | 1 to 2^20 | micro-batches per step |
//	| `train.seed` | `0` | 0 to 2^63-1 | weights, data order, splits, task problems, dropout |
//	| `train.steps_per_report` | `10` | ≥ 1 | logging period |
//	| `train.steps_per_eval` | `200` | ≥ 0 | evaluation period; 0 = never |
//	| `train.val_batches` | `25` | -1 or ≥ 1 | validation batches per evaluation; -1 = all |
//	| `train.save_every` | `100` | ≥ 0 | checkpoint period; 0 = at the end only |
//	| `train.keep` | `3` | ≥ 0 | recent checkpoints kept besides the best; 0 = all |
//	| `train.grad_checkpoint` | `false` | bool | recompute each layer's forward in backward: activation memory for compute |
//	| `train.precision` | `"f32"` | `"f32"`, `"bf16"`, `"f16"`, `"auto"` | activations rounded to bf16/f16 at the layer boundaries, gradients too (f16 with dynamic loss scaling); auto = f16 where seq ≤ 2048 and max abs ≤ 4096; weights, optimizer and arithmetic stay f32 |
//	| `train.max_grad_norm` | `1.0` | ≥ 0 | global gradient-norm clip; 0 = off |
//	| `train.out` | `"run"` | non-empty | run directory |
//	| `train.fine_tune_type` | `"full"` | `"full"`, `"lora"` | lora needs model.from |
//	| `optimizer.name` | `"adamw"` | `"adamw"`, `"adam"`, `"sgd"`, `"lion"` | update rule |
//	| `optimizer.learning_rate` | `0.001` | > 0 | peak learning rate |
//	| `optimizer.betas` | `[0.9, 0.999]` | two numbers in (0, 1) | Adam moments / Lion rates (Lion's paper: [0.9, 0.99]) |
//	| `optimizer.eps` | `1e-08` | > 0 | Adam epsilon |
//	| `optimizer.weight_decay` | `0.01` | ≥ 0 | decoupled (adamw, lion) or L2 (adam, sgd); spares biases, norms, embeddings |
//	| `optimizer.momentum` | `0.0` | [0, 1); sgd only | SGD momentum |
//	| `optimizer.dampening` | `0.0` | [0, 1]; sgd only | SGD dampening |
//	| `optimizer.nesterov` | `false` | bool; sgd with momentum > 0 and dampening 0 | Nesterov momentum |
//	| `lr_schedule.name` | `"constant"` | `"constant"`, `"cosine"`, `"linear"`, `"step"` | schedule after the warmup |
//	| `lr_schedule.warmup` | `0` | ≥ 0; < train.iters | linear warmup steps |
//	| `lr_schedule.warmup_init` | `0.0` | ≥ 0 | learning rate at step 0 of the warmup |
//	| `lr_schedule.final_lr` | `0.0` | ≥ 0 | cosine/linear: rate at the end of the decay |
//	| `lr_schedule.decay_steps` | `0` | ≥ 0 | cosine/linear: decay length; 0 = the rest of the run |
//	| `lr_schedule.gamma` | `0.1` | > 0 | step: factor per step_size steps |
//	| `lr_schedule.step_size` | `1000` | ≥ 1 | step: steps between decays |
//	| `lora.rank` | `8` | 1 to 65536 | adapter rank |
//	| `lora.scale` | `20.0` | > 0 | adapter output scale |
//	| `lora.dropout` | `0.0` | [0, 1) | adapter input dropout |
//	| `lora.keys` | `["self_attn.q_proj", "self_attn.v_proj"]` | non-empty, distinct | linear layers to adapt, by path suffix or path.Match glob |
//	| `lora.num_layers` | `-1` | -1 or 1 to model.layers | adapt the last N blocks; -1 = all (and linears outside the blocks, such as lm_head) |
//	| `eval.problems` | `0` | ≥ 0 | held-out task problems scored per evaluation; 0 = all |
//	| `eval.sample_prompt` | `""` | string | prompt continued greedily at each evaluation |
//	| `eval.sample_tokens` | `0` | 0 to 2^20 | tokens to sample; 0 = no sample |
//
// # Fine-tuning
//
// With model.from, Fit starts from a checkpoint's weights (see LoadModel): the
// base's config.json decides the architecture, and a [model] key the recipe
// gives must agree with it (an Error names the key, both values and the
// config.json); keys left out take the base's values. train.fine_tune_type
// "full" trains every weight with a fresh optimizer; "lora" freezes the base
// (layers.Ctx.Frozen: no gradient is computed for it), attaches [lora]
// adapters and trains only them. A LoRA run's checkpoints hold
// adapters.safetensors ("<module>.lora_a" (in, rank), "<module>.lora_b"
// (rank, out), e.g. "model.layers.0.self_attn.q_proj.lora_a") and
// adapter_config.json (AdapterConfig) instead of model.safetensors; LoadModel
// reads one as base plus adapters, and Fuse merges them into a full
// checkpoint. InspectData shows the rows a recipe trains on, with the
// loss-masked tokens marked.
package recipes
