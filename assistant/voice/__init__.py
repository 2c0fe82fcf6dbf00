"""Voice for Nova: audio decoding, speech-to-text and text-to-speech engines, and their worker."""
