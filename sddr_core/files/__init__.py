"""Files: atomic writes, depth-map formats, safetensors weights, the Hugging Face cache."""
