"""Compare two calls by the cosine similarity of their saved emotion embeddings.

Usage: python cosine_similarity.py a.wav b.wav
"""

import sys

import numpy as np
from sklearn.metrics.pairwise import cosine_similarity

from emotion2vec_plus import Emotion2VecPlus

m = Emotion2VecPlus(model_name="large")
for name in sys.argv[1:3]:
    emb = m.extract_embedding(name)
    np.save(name + ".npy", emb)

emb1 = np.load(sys.argv[1] + ".npy")
emb2 = np.load(sys.argv[2] + ".npy")
similarity = cosine_similarity([emb1], [emb2])[0][0]
print(f"Similarity: {similarity:.4f}")
