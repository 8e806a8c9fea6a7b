# lr-training (paper Table 6; FunctionBench's lr_training): logistic
# regression trained on review text (TF-IDF features), the model saved.
# The reviews are generated: words drawn from a vocabulary, the label from
# which of two word lists the review leans to.
import pickle
import random

feature_extraction = need("sklearn.feature_extraction.text", "python3-sklearn")
linear_model = need("sklearn.linear_model", "python3-sklearn")

GOOD = "great excellent love perfect wonderful fast reliable recommend".split()
BAD = "broken terrible awful slow refund poor disappointing waste".split()
NEUTRAL = [f"word{i}" for i in range(2000)]


def setup():
    rng = random.Random(0)
    reviews, labels = [], []
    for _ in range(5000):
        good = rng.random() < 0.5
        words = rng.choices(NEUTRAL, k=30) + rng.choices(GOOD if good else BAD, k=3)
        rng.shuffle(words)
        reviews.append(" ".join(words))
        labels.append(int(good))
    return reviews, labels


def operation(data):
    reviews, labels = data
    features = feature_extraction.TfidfVectorizer().fit_transform(reviews)
    model = linear_model.LogisticRegression(max_iter=200).fit(features, labels)
    with open("model.pickle", "wb") as f:
        pickle.dump(model, f)
    return 1


serve("training", setup, operation)
