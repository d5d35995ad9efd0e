// Package models assembles decoder-only language models from blocks, choosing the
// mixer (attention, SSM) and feed-forward (dense, MoE) per layer, with a config.json
// and llama-style parameter names.
//
// # Architecture
//
// A [Model] embeds token ids (adding learned position embeddings when the config
// asks for them), runs N pre-norm residual layers
//
//	h   = x + mixer(input_layernorm(x))
//	out = h + feed_forward(post_attention_layernorm(h))
//
// then a final norm and the head (its own matrix, or the token embedding when
// tied). The mixer and feed-forward of each layer are chosen by kind name
// (Config.LayerTypes, Config.FeedForwardTypes) from two registries: the mixers
// attention ("full_attention", "sliding_attention") and Mamba ("mamba", an
// [advanced.Mamba] selective state-space block), the feed-forwards the dense MLP
// ("mlp") and a mixture of experts ("moe", an [advanced.MoE]), each behind the
// [Mixer] or [FeedForward] interface with one registry entry. In generation
// ([Model.ForwardCache]) an attention layer keeps its keys and values and a Mamba
// layer its convolution and scan state. In training, [Model.Loss] adds each MoE
// layer's load-balancing and router z-loss (router_aux_loss_coef,
// router_z_loss_coef) and keeps its routing statistics ([Model.MoEStats]). The
// [Config] chooses
// LayerNorm or RMSNorm, a GELU MLP or SwiGLU, learned positions or RoPE (or
// none), biases, a tied or separate head: [GPT2Config] and [LlamaConfig] are the
// two ends.
//
// [Model.Train] ([TrainOptions]) changes how a training forward runs: each
// layer recomputed during backward (GradCheckpoint), activations rounded to
// bfloat16 or float16 at the layer boundaries (Precision, with "auto" the
// seed's safe-float16 rule), residual dropout.
//
// # Parameter names
//
// Names follow Hugging Face's llama (LlamaForCausalLM) wherever the part exists,
// so a llama-shaped model's weights load in HF tools as they are. {i} is the layer
// index; parts marked (ours) do not exist in llama and are named in the same style.
//
//	model.embed_tokens.weight                        (vocab, hidden)
//	model.embed_positions.weight                     (max_position_embeddings, hidden)   learned positions (ours)
//	model.layers.{i}.input_layernorm.weight          (hidden)
//	model.layers.{i}.input_layernorm.bias            (hidden)   LayerNorm with norm_bias (ours)
//	model.layers.{i}.self_attn.q_proj.weight         (heads·head_dim, hidden)
//	model.layers.{i}.self_attn.k_proj.weight         (kv_heads·head_dim, hidden)
//	model.layers.{i}.self_attn.v_proj.weight         (kv_heads·head_dim, hidden)
//	model.layers.{i}.self_attn.o_proj.weight         (hidden, heads·head_dim)
//	model.layers.{i}.self_attn.{q,k,v,o}_proj.bias   attention_bias
//	model.layers.{i}.post_attention_layernorm.weight (hidden)
//	model.layers.{i}.post_attention_layernorm.bias   (hidden)   LayerNorm with norm_bias (ours)
//	model.layers.{i}.mlp.gate_proj.weight            (intermediate, hidden)   gated MLP (SwiGLU) only
//	model.layers.{i}.mlp.up_proj.weight              (intermediate, hidden)
//	model.layers.{i}.mlp.down_proj.weight            (hidden, intermediate)
//	model.layers.{i}.mlp.{gate,up,down}_proj.bias    mlp_bias
//	model.norm.weight                                (hidden)
//	model.norm.bias                                  (hidden)   LayerNorm with norm_bias (ours)
//	lm_head.weight                                   (vocab, hidden)   absent when tie_word_embeddings
//
// A "mamba" layer's mixer is named as in Hugging Face's Mamba (MambaMixer), with
// E = expand·hidden, N = state_size, R = time_step_rank, K = conv_kernel:
//
//	model.layers.{i}.mixer.in_proj.weight            (2E, hidden)
//	model.layers.{i}.mixer.conv1d.weight             (E, 1, K)
//	model.layers.{i}.mixer.conv1d.bias               (E)
//	model.layers.{i}.mixer.x_proj.weight             (R+2N, E)
//	model.layers.{i}.mixer.dt_proj.weight            (E, R)
//	model.layers.{i}.mixer.dt_proj.bias              (E)
//	model.layers.{i}.mixer.A_log                     (E, N)
//	model.layers.{i}.mixer.D                         (E)
//	model.layers.{i}.mixer.out_proj.weight           (hidden, E)
//
// A "moe" layer's feed-forward is named as in mlx-lm's MoE models (one stacked
// tensor per projection over the X = num_local_experts experts of width
// F = moe_intermediate_size; gate_proj with SwiGLU only, biases with mlp_bias;
// the n_shared_experts shared experts as one dense MLP of width
// n_shared_experts·F):
//
//	model.layers.{i}.mlp.gate.weight                      (X, hidden)   the router
//	model.layers.{i}.mlp.switch_mlp.gate_proj.weight      (X, F, hidden)
//	model.layers.{i}.mlp.switch_mlp.up_proj.weight        (X, F, hidden)
//	model.layers.{i}.mlp.switch_mlp.down_proj.weight      (X, hidden, F)
//	model.layers.{i}.mlp.switch_mlp.{gate,up}_proj.bias   (X, F)
//	model.layers.{i}.mlp.switch_mlp.down_proj.bias        (X, hidden)
//	model.layers.{i}.mlp.shared_experts.{gate,up,down}_proj.*
//
// The GELU MLP of GPT-2-style models is down_proj(gelu(up_proj(x))) under the same
// names, without gate_proj. Linear weights are (out, in) as PyTorch stores them.
// LoRA adapters attached with [layers.AttachLoRA] (targets from [Model.Linears])
// add "<module>.lora_a" (in, rank) and "<module>.lora_b" (rank, out).
// [Model.Params] lists the parameters in the order above, layer by layer;
// [Model.StateDict] and [Model.LoadStateDict] use the same names.
//
// A quantized module ([Model.Quantize]; the token embedding, a linear layer or
// a mixture of experts' stacked projection, see [Model.QuantTargets]) stores
// MLX's "<module>.weight" (uint32, (out, in·bits/32)), "<module>.scales" and
// "<module>.biases" (float32, (out, in/group_size); experts have a leading axis)
// in place of its float weight, and config.json records the layout under
// "quantization" (see package quant).
//
// # Speed
//
// Training in float32 runs fused kernels where the unfused ops would cost memory
// passes: the token and position embeddings in one pass; [LinearGELU] (the up
// projection, its bias and an exact-erf GELU whose derivative is kept instead of
// the pre-activation); o_proj and down_proj with the residual addition fused in
// (the mixer's and feed-forward's ForwardResidual, used when they have one);
// [LayerNorm] with AVX2 row kernels; autodiff's fused cross-entropy; and
// attention.Block's packed q/k/v projection and attention on AVX2 tiles.
// BenchmarkTinyGPTStep measures a training step of a tiny GPT against
// bench/torch_tiny_gpt.py (bench/tiny_gpt.sh runs both).
package models
