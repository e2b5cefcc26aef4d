"""Run folders (``data_dir/runs/<run id>/``): what every backtest, paper and live run leaves behind for the report,
``trader compare`` and ``trader sweep``. ``model`` is the shape; the writer and reader live beside it."""
