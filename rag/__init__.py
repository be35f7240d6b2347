"""Answering without HTTP: retrieval, the prompt, generation steps, citations and support.

* :mod:`rag.retrieval` -- the one retrieval path (hybrid search, fusion, relevance) used by
  the server and the evaluation alike.
* :mod:`rag.budget` -- the one rule for an answer's ``max_tokens``.
* :mod:`rag.prompt` -- the system prompt and how sources are shown to the model.
* :mod:`rag.packing` -- the prompt within the model's context.
* :mod:`rag.citations` -- ``[n]`` markers: found, checked, removed.
* :mod:`rag.attribution` -- which source backs each sentence of an answer.
* :mod:`rag.answer_guard` -- what a model wrote is checked before it reaches the user.
* :mod:`rag.service` -- :class:`~rag.service.RagService`, the steps in order.

Import the submodules directly: this package imports nothing.
"""
