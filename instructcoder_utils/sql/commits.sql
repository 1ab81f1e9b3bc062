-- Seed commits: single-file Python edits under a permissive licence.
--
-- Written in BigQuery Standard SQL against `bigquery-public-data.github_repos`; the same text runs
-- on DuckDB after `sqlglot.transpile(sql, read="bigquery", write="duckdb")`, where the local mirror
-- of the mined repositories is attached under the catalog name "bigquery-public-data" (schema
-- github_repos, tables commits / contents / files / licenses), so no table name is rewritten.
--
-- Query parameters (BigQuery: @name; DuckDB after transpiling: $name):
--   @licenses        ARRAY<STRING>  licence keys to keep (github_repos.licenses.license)
--   @max_file_bytes  INT64          largest blob kept, before and after
--   @row_limit       INT64          most rows returned
--
-- Note: github_repos.contents holds the blobs of the files snapshot, so on BigQuery the "before"
-- blob of a commit is found only when that version still exists in some repository's tree.
SELECT
  c.repo_name[SAFE_OFFSET(0)] AS repository,
  c.commit AS commit,
  c.subject AS subject,
  c.message AS message,
  c.author.name AS author_name,
  c.author.email AS author_email,
  c.difference[OFFSET(0)].new_path AS path,
  before_blob.content AS code_before,
  after_blob.content AS code_after,
  lic.license AS license
FROM `bigquery-public-data.github_repos.commits` AS c
JOIN `bigquery-public-data.github_repos.licenses` AS lic
  ON lic.repo_name = c.repo_name[SAFE_OFFSET(0)]
JOIN `bigquery-public-data.github_repos.contents` AS before_blob
  ON before_blob.id = c.difference[OFFSET(0)].old_sha1
JOIN `bigquery-public-data.github_repos.contents` AS after_blob
  ON after_blob.id = c.difference[OFFSET(0)].new_sha1
WHERE ARRAY_LENGTH(c.parent) = 1                                  -- no merges, no root commits
  AND ARRAY_LENGTH(c.difference) = 1                              -- exactly one file changed
  AND NOT c.difference_truncated
  AND c.difference[OFFSET(0)].old_path = c.difference[OFFSET(0)].new_path   -- no add/delete/rename
  AND ENDS_WITH(LOWER(c.difference[OFFSET(0)].new_path), '.py')  -- Python files only
  AND c.difference[OFFSET(0)].old_mode IN (33188, 33261)          -- regular files (0o100644, 0o100755)
  AND c.difference[OFFSET(0)].new_mode IN (33188, 33261)
  AND c.difference[OFFSET(0)].old_sha1 != c.difference[OFFSET(0)].new_sha1  -- the content changed
  AND lic.license IN UNNEST(@licenses)                            -- permissive licences
  AND NOT before_blob.binary AND NOT after_blob.binary
  AND before_blob.content IS NOT NULL AND after_blob.content IS NOT NULL
  AND before_blob.size <= @max_file_bytes AND after_blob.size <= @max_file_bytes
ORDER BY repository, commit
LIMIT @row_limit
