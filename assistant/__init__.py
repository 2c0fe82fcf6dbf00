"""Nova's conversation core: sessions, answers, fallbacks; knows nothing of the UI."""
