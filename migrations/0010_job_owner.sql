-- Who queued a job (`token:admin`, `token:read` or `address:<ip>`), for the per-caller cap on
-- pending jobs; null for jobs queued from the command line or before this column existed.
alter table jobs add column owner text;
create index jobs_owner_pending on jobs (owner) where state in ('queued', 'running');
