"""Key delivery (M9): the Lambda function URL that serves per-title content keys."""
