"""Channel live codes (渠道活码): the channel, its contact way, rotation, config, welcome."""
