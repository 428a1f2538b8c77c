"""minibert: BERT built step by step, faithful to Devlin et al. (2019) and Google's reference code.

One module a concept, in the order the book builds them:

* :mod:`minibert.data`: the book's data sets (local mirror or Hugging Face hub) and pretrained weights
* :mod:`minibert.tokenizer`, :mod:`minibert.wordpiece_training`: WordPiece (Chapter 1)
* :mod:`minibert.config`, :mod:`minibert.model`, :mod:`minibert.heads`, :mod:`minibert.checkpoint`: the model (Chapters 2-4)
* :mod:`minibert.viz`: attention views (Chapter 3)
* :mod:`minibert.corpus`, :mod:`minibert.pretraining`: pre-training data, MLM and NSP (Chapters 5-6)
* :mod:`minibert.train`, :mod:`minibert.pretrain`: the trainer and ``python -m minibert.pretrain`` (Chapter 7)
* :mod:`minibert.finetuning` (the loop), :mod:`minibert.glue`, :mod:`minibert.squad`, :mod:`minibert.ner` (the tasks),
  :mod:`minibert.finetune` (``python -m minibert.finetune``): fine-tuning (Chapters 8-10)
* :mod:`minibert.pipelines` (:func:`minibert.pipeline`) and ``python -m minibert.predict``: using a trained model
"""
__version__ = "0.1.0"

from .config import BertConfig  # noqa: F401
from .data import load_dataset, pretrained_path, vocab_path  # noqa: F401
from .model import (  # noqa: F401
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from .pipelines import pipeline  # noqa: F401
from .tokenizer import BertTokenizer  # noqa: F401
