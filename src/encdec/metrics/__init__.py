"""Text metrics (sacreBLEU, chrF, exact match; perplexity) and caption metrics (BLEU, CIDEr-D,
ROUGE-L)."""
