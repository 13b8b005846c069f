namespace Telemetry.Ingest.Codecs;

/// <summary>Where a <see cref="UploadStreamReader"/> stopped.</summary>
public enum UploadReadStatus
{
    /// <summary>Everything complete in the buffer was read; more data is needed.</summary>
    NeedMoreData,

    /// <summary>The batch holds enough readings to commit; call again with the rest of the buffer after committing.</summary>
    BatchFull,

    /// <summary>The upload was read to its end.</summary>
    Completed,

    /// <summary>The upload is not readable from here on; <see cref="UploadStreamReader.Error"/> says why.</summary>
    Malformed,
}
