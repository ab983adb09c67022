"""Compare two calls by the cosine similarity of their saved emotion embeddings.

Usage: python cosine_similarity.py [--model NAME] a.wav b.wav

NAME defaults to the bundled compact model (works offline); ``--model large`` uses emotion2vec+
large (downloaded on first use). Cosines are only comparable between embeddings of one model.
"""

import argparse

import numpy as np
from sklearn.metrics.pairwise import cosine_similarity

from emotion2vec_plus import Emotion2VecPlus

parser = argparse.ArgumentParser(description="Cosine similarity of two recordings' emotion embeddings.")
parser.add_argument("--model", default="compact", help="compact (bundled, default), seed, base, large, or a directory")
parser.add_argument("first")
parser.add_argument("second")
args = parser.parse_args()

m = Emotion2VecPlus(model_name=args.model)
for name in (args.first, args.second):
    emb = m.extract_embedding(name)
    np.save(name + ".npy", emb)

emb1 = np.load(args.first + ".npy")
emb2 = np.load(args.second + ".npy")
similarity = cosine_similarity([emb1], [emb2])[0][0]
print(f"Similarity: {similarity:.4f}")
