"""Optional integrations with voice-agent frameworks; each needs its extra."""
