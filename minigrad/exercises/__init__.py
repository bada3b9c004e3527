"""Exam-style exercises, a student release and an autograder (see registry)."""

from .registry import Exercise, Question, all_exercises, all_questions, get_exercise, show

__all__ = ["Exercise", "Question", "all_exercises", "all_questions", "get_exercise", "show"]
