-- A read also records each image it left out because its pixel data did not
-- decode, with why: the decoder process crashed, ran past its time, ran out of
-- its memory or made a forbidden system call, or the object is undecodable.

ALTER TABLE read_skipped_instances DROP CONSTRAINT read_skipped_instances_reason_check;
ALTER TABLE read_skipped_instances ADD CONSTRAINT read_skipped_instances_reason_check
  CHECK (reason IN ('burned_in_annotation', 'burned_in_annotation_unknown', 'decoder_crashed', 'decoder_timeout',
                    'decoder_out_of_memory', 'decoder_forbidden_syscall', 'undecodable'));
