"""Where a stage's LM call goes: hosted or vLLM endpoints through DSPy, the embedded llama.cpp
model, recorded answers replayed, and the adaptive limit on calls in flight."""
