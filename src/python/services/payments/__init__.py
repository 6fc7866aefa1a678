"""The payments service: a simulated provider that captures, declines and refunds order payments."""
