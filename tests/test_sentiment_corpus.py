"""Labelled sentences for the text model: loaders, the family split, metrics, the lexicon baseline, the card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tests.sentiment_fixtures import user_corpus_rows, write_phrasebank
from training.errors import TrainingError
from training.sentiment import LABELS
from training.sentiment.card import PROJECT_SET_LIMITS, TextCardFacts, render_text_card
from training.sentiment.config import SentimentRunConfig
from training.sentiment.corpus import (
    COLUMNS,
    PROJECT_DATA,
    Corpus,
    CorpusError,
    load_held_out,
    load_labelled,
    load_project_corpus,
)
from training.sentiment.lexicon import LoughranMcDonald
from training.sentiment.metrics import classification_report, label_indices, render_confusion
from training.sentiment.split import split_by_family


@pytest.fixture(scope="module")
def project() -> Corpus:
    return load_project_corpus()


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def located(error: CorpusError) -> list[tuple[str, int | None, str | None]]:
    return [(p.file, p.row, p.column) for p in error.problems]


def refused(*paths: Path) -> CorpusError:
    with pytest.raises(CorpusError) as info:
        load_labelled(paths)
    return info.value


def family_frame(n_families: int = 30, size: int = 3, topics: tuple[str, ...] = ("earnings", "macro")) -> pd.DataFrame:
    """A corpus frame in COLUMNS: per topic, families of ``size`` sentences, labels rotating by family."""
    rows = [
        {
            "sentence": f"{topic} sentence {f}-{i}",
            "label": LABELS[f % 3],
            "family": f"{topic}-{f:03d}",
            "topic": topic,
            "source": f"t.csv:{f}",
        }
        for topic in topics
        for f in range(n_families)
        for i in range(size)
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


# --- the project's set --------------------------------------------------------------------------


def test_the_project_set_loads_with_three_labels_and_validation_families_in_every_topic(project: Corpus) -> None:
    frame = project.frame
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) >= 1500 and frame["sentence"].str.lower().is_unique
    counts = project.label_counts()
    assert set(counts) == set(LABELS) and min(counts.values()) >= 300
    assert (frame["family"] != frame["source"]).all() and (frame["topic"] != "").all()
    files = sorted(PROJECT_DATA.glob("sentences_*.csv"))  # the description counts every file read
    assert len(files) >= 5 and f"project set ({len(files)} files" in project.description
    split = split_by_family(frame, valid_fraction=0.2, seed=0)
    assert frame["topic"].nunique() >= 5
    for topic in frame["topic"].unique():
        assert split.valid.loc[split.valid["topic"] == topic, "family"].nunique() >= 2, topic
        assert split.train.loc[split.train["topic"] == topic, "family"].nunique() >= 2, topic
    assert set(split.valid["label"]) == set(LABELS)


def test_a_project_folder_without_sentence_files_or_without_families_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no sentences_\*\.csv file"):
        load_project_corpus(tmp_path)
    write(tmp_path / "sentences_x.csv", "sentence,label\nProfit rose.,positive\n")
    with pytest.raises(CorpusError, match="the project's set needs a family column"):
        load_project_corpus(tmp_path)


# --- user formats -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["sentence,label", "Text,Sentiment", "SENTIMENT,TEXT", " label , sentence ", "id,text,label,note"],
)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])  # a spreadsheet's byte-order mark is not a name
def test_a_csv_with_a_header_is_read_in_any_case_and_column_order(tmp_path: Path, header: str, encoding: str) -> None:
    names = [h.strip().lower() for h in header.split(",")]
    values = {"sentence": "Profit rose 12% to $40m.", "text": "Profit rose 12% to $40m.", "id": "7", "note": "x"}
    rows = [
        ("Profit rose 12% to $40m.", " Positive "),
        ("Loss  widened\tsharply.", "NEG"),
        ("AGM on Friday.", "neutral"),
    ]
    lines = [header]
    for sentence, label in rows:
        cell = {**values, "sentence": sentence, "text": sentence, "label": label, "sentiment": label}
        lines.append(",".join(f'"{cell[n]}"' for n in names))
    path = write(tmp_path / "mine.csv", "\n".join(lines) + "\n", encoding)
    frame = load_labelled([path]).frame
    assert frame["sentence"].tolist() == ["Profit rose 12% to $40m.", "Loss widened sharply.", "AGM on Friday."]
    assert frame["label"].tolist() == ["positive", "negative", "neutral"]
    assert frame["source"].tolist() == ["mine.csv:2", "mine.csv:3", "mine.csv:4"]
    assert (frame["family"] == frame["source"]).all() and (frame["topic"] == "").all()


def test_a_headerless_two_column_csv_is_read_in_either_order(tmp_path: Path) -> None:
    sentence_first = write(tmp_path / "a.csv", 'Profit rose.,positive\n"Sales fell, again.",negative\n')
    # Financial PhraseBank's all-data.csv: label first, ISO-8859-1, spaces around punctuation.
    phrasebank = tmp_path / "all-data.csv"
    text = (
        'neutral,"Soci\xe9t\xe9 G\xe9n\xe9rale said the AGM is in May , as planned ."\n'
        "positive,Operating profit rose to Â£ 5.2 mn from Â£ 3.1 mn .\n"
        "negative,Net sales fell 8 % .\n"
    )
    write(phrasebank, text, "latin-1")
    first = load_labelled([sentence_first]).frame
    assert first[["sentence", "label"]].values.tolist() == [
        ["Profit rose.", "positive"],
        ["Sales fell, again.", "negative"],
    ]
    assert first["source"].tolist() == ["a.csv:1", "a.csv:2"]
    corpus = load_labelled([phrasebank])
    frame = corpus.frame
    assert frame["label"].tolist() == ["neutral", "positive", "negative"]
    # Every byte kept as written: nothing dropped or replaced by the latin-1 fallback.
    assert frame["sentence"].tolist() == [
        "Soci\xe9t\xe9 G\xe9n\xe9rale said the AGM is in May , as planned .",
        "Operating profit rose to Â£ 5.2 mn from Â£ 3.1 mn .",
        "Net sales fell 8 % .",
    ]
    assert corpus.description == "user corpus (all-data.csv)"


def test_a_phrasebank_txt_file_in_latin_1_is_read(tmp_path: Path) -> None:
    path = write_phrasebank(
        tmp_path / "Sentences_AllAgree.txt",
        [
            ("Nokian Renkaat 's net sales rose to EUR 1.1 bn , said Andr\xe9 .", "positive"),
            ("Questions can be mailed to ir@example.fi before the meeting .", "neutral"),
            ("The company 's loss widened to \xa3 3 mn .", "negative"),
        ],
        extra_lines=["", "   "],
    )
    corpus = load_labelled([path])
    assert corpus.frame["sentence"].tolist() == [
        "Nokian Renkaat 's net sales rose to EUR 1.1 bn , said Andr\xe9 .",
        "Questions can be mailed to ir@example.fi before the meeting .",  # split on the last '@'
        "The company 's loss widened to \xa3 3 mn .",
    ]
    assert corpus.frame["label"].tolist() == ["positive", "neutral", "negative"]
    assert corpus.frame["source"].tolist() == [f"Sentences_AllAgree.txt:{n}" for n in (1, 2, 3)]
    assert corpus.label_counts() == {"negative": 1, "neutral": 1, "positive": 1}


def test_files_are_combined_and_repeated_sentences_kept_once(tmp_path: Path) -> None:
    csv_file = write(
        tmp_path / "a.csv", "sentence,label\nProfit rose.,positive\nSales fell.,negative\nprofit  ROSE.,pos\n"
    )
    txt_file = write_phrasebank(tmp_path / "b.txt", [("Profit rose.", "positive"), ("The AGM is in May.", "neutral")])
    corpus = load_labelled([csv_file, txt_file])
    assert corpus.frame["sentence"].tolist() == ["Profit rose.", "Sales fell.", "The AGM is in May."]
    assert corpus.frame["source"].tolist() == ["a.csv:2", "a.csv:3", "b.txt:2"]  # the first occurrence is kept
    assert corpus.description == "user corpus (a.csv, b.txt); 2 repeated sentence(s) kept once"


def test_a_csv_family_column_keeps_its_rows_on_one_side_of_the_split(tmp_path: Path) -> None:
    lines = ["text,label,group"]
    for f in range(24):
        lines += [f"Wording {w} of idea {f}.,{LABELS[f % 3]},idea-{f}" for w in range(3)]
    lines.append("A loner.,neutral,")  # an empty family cell is a mistake, not a family of its own
    path = write(tmp_path / "grouped.csv", "\n".join(lines) + "\n")
    error = refused(path)
    assert located(error) == [(str(path), 74, "family")] and "the family is empty" in str(error)

    write(path, "\n".join(lines[:-1]) + "\n")
    frame = load_labelled([path]).frame
    assert frame.groupby("family").size().eq(3).all() and frame["family"].nunique() == 24
    for seed in range(5):
        split = split_by_family(frame, valid_fraction=0.25, seed=seed)
        assert not set(split.train["family"]) & set(split.valid["family"])
        assert split.valid.groupby("family").size().eq(3).all()


# --- refused corpora ----------------------------------------------------------------------------


def test_every_bad_line_is_named_with_its_file_and_line_and_the_corpus_refused(tmp_path: Path) -> None:
    csv_file = write(
        tmp_path / "mine.csv",
        'sentence,label\nProfit rose.,positive\n" ",neutral\nSales fell.,great\n\n'
        "Only one field\nLoss widened.,negative\n",
    )
    txt_file = write_phrasebank(
        tmp_path / "more.txt",
        [("The AGM is in May.", "neutral")],
        extra_lines=["a line without a label", "@positive", "PROFIT ROSE.@negative"],
    )
    error = refused(csv_file, txt_file)
    assert located(error) == [
        (str(csv_file), 3, "sentence"),
        (str(csv_file), 4, "label"),
        (str(csv_file), 6, None),
        (str(txt_file), 2, None),
        (str(txt_file), 3, "sentence"),
    ]
    message = str(error)
    assert message.startswith("5 problem(s) in the labelled corpus")
    assert f"{csv_file}, row 4, column 'label': unknown label 'great'" in message
    assert f"{txt_file}, row 2: expected 'sentence@label'" in message


def test_a_sentence_under_two_labels_is_dropped_counted_and_named_by_file_and_line(tmp_path: Path) -> None:
    csv_file = write(
        tmp_path / "mine.csv",
        "sentence,label\nProfit rose.,positive\nSales fell.,negative\nThe AGM is in May.,neutral\n"
        "PROFIT  rose.,negative\nSales fell.,negative\n",
    )
    txt_file = write_phrasebank(tmp_path / "more.txt", [("profit rose.", "neutral"), ("Costs rose .", "negative")])
    corpus = load_labelled([csv_file, txt_file])
    # Every row of the conflicting sentence leaves (no reading is guessed); a same-label repeat is kept once.
    assert corpus.frame["sentence"].tolist() == ["Sales fell.", "The AGM is in May.", "Costs rose ."]
    assert corpus.conflicting_rows == 3
    assert [(p.file, p.row, p.column) for p in corpus.conflicts] == [("mine.csv", 2, "label")]
    assert "mine.csv:2 (positive), mine.csv:5 (negative), more.txt:1 (neutral)" in corpus.conflicts[0].message
    assert corpus.description == (
        "user corpus (mine.csv, more.txt); 1 sentence(s) with conflicting labels dropped (3 rows); "
        "1 repeated sentence(s) kept once"
    )


def test_a_corpus_of_only_conflicting_sentences_is_refused_naming_them(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "sentence,label\nProfit rose.,positive\nprofit rose.,negative\n")
    error = refused(path)
    assert located(error)[0] == ("c.csv", 2, "label") and "no labelled sentence" in str(error)


def test_a_headerless_csv_names_the_line_with_an_unknown_label(tmp_path: Path) -> None:
    # One misspelt label in a 3-line all-data.csv must be reported on its own line, as in every other
    # format; today the whole file is refused as "expected a header ... (row 1)".
    path = write(
        tmp_path / "all-data.csv", "neutral,The AGM is in May .\npostive,Profit rose .\nnegative,Sales fell .\n"
    )
    error = refused(path)
    assert located(error) == [(str(path), 2, "label")]
    assert "unknown label 'postive'" in str(error)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("notes.json", "[]", "expected .csv (sentence,label) or .txt (sentence@label)"),
        ("empty.csv", "", "the file is empty"),
        ("three.csv", "a,b,c\nx,positive,y\n", "expected a header with sentence/text and label/sentiment"),
        ("blank.txt", "\n \n", "no labelled sentence"),
    ],
)
def test_an_unusable_file_is_refused_naming_it(tmp_path: Path, name: str, content: str, words: str) -> None:
    path = write(tmp_path / name, content)
    error = refused(path)
    assert words in str(error)
    assert name in str(error)


def test_a_missing_file_or_no_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    assert located(refused(missing)) == [(str(missing), None, None)]
    assert "no file given" in str(refused())


# --- split by family ----------------------------------------------------------------------------


def test_the_project_split_never_straddles_and_is_deterministic_per_seed(project: Corpus) -> None:
    frame = project.frame
    first = split_by_family(frame, valid_fraction=0.2, seed=0)
    assert not set(first.train["family"]) & set(first.valid["family"])
    assert len(first.train) + len(first.valid) == len(frame)
    again = split_by_family(frame, valid_fraction=0.2, seed=0)
    pd.testing.assert_frame_equal(first.valid, again.valid)
    other = split_by_family(frame, valid_fraction=0.2, seed=1)
    assert set(other.valid["family"]) != set(first.valid["family"])
    assert not set(other.train["family"]) & set(other.valid["family"])


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_each_topic_holds_out_about_the_fraction_in_whole_families(fraction: float) -> None:
    frame = family_frame(n_families=30, size=3)
    split = split_by_family(frame, valid_fraction=fraction, seed=4)
    assert not set(split.train["family"]) & set(split.valid["family"])
    for topic, rows in frame.groupby("topic"):
        share = (split.valid["topic"] == topic).sum() / len(rows)
        # Whole families are added until the fraction is reached: at most one family (3 of 90) over.
        assert fraction <= share <= fraction + 3 / len(rows), (topic, share)


def test_a_split_side_without_a_label_is_an_error_and_the_fraction_is_checked() -> None:
    frame = family_frame(n_families=12, size=2, topics=("only",))
    one_negative_family = frame.loc[(frame["label"] != "negative") | (frame["family"] == "only-000")]
    with pytest.raises(TrainingError, match="side of the split has no negative sentence"):
        split_by_family(one_negative_family, valid_fraction=0.3, seed=0)
    for fraction in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(TrainingError, match="valid_fraction must be in"):
            split_by_family(frame, valid_fraction=fraction)


def test_a_user_corpus_splits_sentence_by_sentence(tmp_path: Path) -> None:
    corpus = load_labelled([write_phrasebank(tmp_path / "s.txt", user_corpus_rows())])
    split = split_by_family(corpus.frame, valid_fraction=0.2, seed=0)
    assert len(split.valid) == 13  # ceil(0.2 * 63) single-sentence families
    assert set(split.valid["label"]) == set(LABELS)


# --- metrics ------------------------------------------------------------------------------------


def test_the_report_matches_a_hand_computed_example() -> None:
    true = np.array([0, 0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0, 2])
    report = classification_report(true, predicted)
    np.testing.assert_array_equal(report.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    assert report.n == 7 and report.accuracy == pytest.approx(5 / 7)
    assert report.precision == pytest.approx({"negative": 0.5, "neutral": 2 / 3, "positive": 1.0})
    assert report.recall == pytest.approx({"negative": 0.5, "neutral": 1.0, "positive": 2 / 3})
    assert report.f1 == pytest.approx({"negative": 0.5, "neutral": 0.8, "positive": 0.8})
    assert report.macro_f1 == pytest.approx(0.7)
    assert report.as_metrics("val") == pytest.approx(
        {
            "val_accuracy": 5 / 7,
            "val_macro_f1": 0.7,
            "val_f1_negative": 0.5,
            "val_f1_neutral": 0.8,
            "val_f1_positive": 0.8,
        }
    )
    table = render_confusion(report).splitlines()
    assert table[0].split()[-3:] == list(LABELS)
    assert table[3].split() == ["positive", "1", "0", "2"]


def test_a_class_never_predicted_gets_precision_zero_and_lowers_macro_f1() -> None:
    true = np.array([0, 0, 1, 1, 2, 2])
    ignores_positive = classification_report(true, np.array([0, 0, 1, 1, 1, 1]))
    assert ignores_positive.precision["positive"] == 0.0 and ignores_positive.recall["positive"] == 0.0
    assert ignores_positive.f1["positive"] == 0.0
    assert not np.isnan(list(ignores_positive.precision.values())).any()
    assert ignores_positive.macro_f1 == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    one_positive_found = classification_report(true, np.array([0, 0, 1, 1, 2, 1]))
    assert one_positive_found.macro_f1 > ignores_positive.macro_f1
    assert ignores_positive.accuracy == pytest.approx(4 / 6)


def test_label_indices_and_bad_inputs() -> None:
    np.testing.assert_array_equal(label_indices(["positive", "negative", "neutral"]), [2, 0, 1])
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['Positive', 'bullish'\]"):
        label_indices(["negative", "bullish", "Positive"])
    with pytest.raises(ValueError, match="non-empty and of equal length"):
        classification_report(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="non-empty"):
        classification_report(np.array([], dtype=int), np.array([], dtype=int))


# --- the Loughran-McDonald baseline -------------------------------------------------------------


def test_the_lexicon_reads_plain_finance_sentences_and_misses_a_narrowed_loss() -> None:
    lexicon = LoughranMcDonald()
    texts = [
        "The company achieved record profit and strong growth, and the board raised its guidance.",
        "The company reported a loss and warned of weak demand, impairment charges and layoffs.",
        "The annual general meeting will be held at 10am on 14 November in Sydney.",
        "Net loss narrowed to $3 million from $9 million a year earlier.",
    ]
    polarity = lexicon.polarity(texts)
    assert polarity.shape == (4,) and (np.abs(polarity) <= 1.0).all()
    assert polarity[0] > 0 > polarity[1] and polarity[2] == 0.0
    predicted = lexicon.predict(texts)
    assert predicted.dtype == np.int64
    assert predicted[:3].tolist() == [2, 0, 1]
    # The known limit: "loss" is a negative word and the lexicon cannot read "narrowed" (good news).
    assert predicted[3] == 0


# --- configuration and card ---------------------------------------------------------------------


def test_the_sentiment_section_validates_and_the_smoke_test_runs_one_epoch() -> None:
    section = SentimentRunConfig.model_validate({"epochs": 4, "seed": 3, "corpus": ["a.txt"]})
    assert section.corpus == [Path("a.txt")] and section.finetune().epochs == 4
    assert section.finetune().seed == 3 and section.finetune().freeze_embeddings
    assert SentimentRunConfig(epochs=4, smoke_test=True).finetune().epochs == 1
    assert SentimentRunConfig(freeze_layers=2, freeze_embeddings=False).finetune().freeze_layers == 2
    assert not SentimentRunConfig(freeze_embeddings=False).finetune().freeze_embeddings
    bad_sections = ({"epoch": 2}, {"valid_fraction": 1.0}, {"runtime": "jax"}, {"max_length": 4}, {"freeze_layers": 7})
    for bad in bad_sections:
        with pytest.raises(ValidationError):
            SentimentRunConfig.model_validate(bad)


def test_the_card_compares_with_the_lexicon_and_states_the_limits() -> None:
    good = classification_report(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 2]))
    weak = classification_report(np.array([0, 1, 2, 2]), np.array([1, 1, 1, 2]))
    facts = TextCardFacts(
        corpus="project set (3 files, written for Portfolio OS)",
        label_counts={"train": {"negative": 2, "neutral": 1}, "validation": {"positive": 2}},
        families={"train": 2, "validation": 1},
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        params={"epochs": 1},
        model=good,
        lexicon=weak,
        fine_tune_seconds=12.0,
        code_version="abc",
        project_set=True,
    )
    card = render_text_card(facts, limits=["A test limit."])
    assert f"Validation macro-F1 1.000 vs {weak.macro_f1:.3f}" in card
    assert f"(+{1 - weak.macro_f1:.3f})" in card
    assert "- train: 3 sentences in 2 families (negative 2, neutral 1, positive 0)" in card
    assert all(limit in card for limit in PROJECT_SET_LIMITS) and "- A test limit." in card
    user_card = render_text_card(TextCardFacts(**{**facts.__dict__, "project_set": False, "model": weak}))
    assert not any(limit in user_card for limit in PROJECT_SET_LIMITS)
    assert "(+0.000)" in user_card


# --- a corpus cut by its own rows ---------------------------------------------------------------


def test_a_corpus_is_cut_by_its_data_rows_and_no_validation_sentence_is_trained_on(tmp_path: Path) -> None:
    lines = ["sentence,label"] + [f"Written sentence {i}.,{LABELS[i % 3]}" for i in range(1, 10)]
    lines += ["written SENTENCE 2.,positive", "Written sentence 9.,negative"]  # rows 10-11: repeats of 2 and 9
    path = write(tmp_path / "own.csv", "\n".join(lines) + "\n")
    held = load_held_out(path, train_rows=(1, 6), valid_rows=(7, 11))
    # Row 2 is repeated in validation (row 10): it leaves training; row 9's repeat is kept once.
    assert held.train.frame["source"].tolist() == [f"own.csv:{n}" for n in (2, 4, 5, 6, 7)]
    assert held.valid.frame["source"].tolist() == ["own.csv:8", "own.csv:9", "own.csv:10", "own.csv:11"]
    assert held.leaked == 1
    assert held.valid.frame["sentence"].str.lower().tolist() == [
        "written sentence 7.",
        "written sentence 8.",
        "written sentence 9.",
        "written sentence 2.",
    ]
    assert "own.csv rows 7-11" in held.valid.description and "own.csv rows 1-6" in held.train.description

    everything_else = load_held_out(path, train_rows=None, valid_rows=(10, 11))
    assert len(everything_else.train.frame) == 7 and everything_else.leaked == 2


def test_row_ranges_outside_the_file_are_refused_naming_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path / "own.csv", "sentence,label\nA.,positive\nB.,negative\nC.,neutral\n")
    with pytest.raises(CorpusError, match=r"column 'valid_rows': rows 3-9 are outside 1-3"):
        load_held_out(path, train_rows=None, valid_rows=(3, 9))
