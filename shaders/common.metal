// Shared helpers for every kernel. Written in the portable subset that both Metal
// and the C++ simulator accept (see DESIGN.md): no double, no lambdas, no vector casts.
#include <metal_stdlib>
using namespace metal;
