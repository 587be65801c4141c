"""Research on candle files: the replay driver that runs them through every variant in the engine."""
