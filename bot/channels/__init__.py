"""Channel live codes (渠道活码): what a channel is, its WeCom contact way, rotation, config."""
