"""The text families (registered in aigc.models.MODELS beside the image ones): `charrnn`, an
LSTM language model; `textvae`, Bowman et al.'s LSTM VAE of sentences; `gpt`, a small decoder-only
transformer. Their shared half — `TextConfig`, `TextModel` and the stateless pieces they use —
is in `base.py`."""
