"""An agent module that forgot ``AGENT``."""


class Forgotten:
    pass
