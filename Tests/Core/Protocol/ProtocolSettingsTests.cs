using MinBft.Encoding;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>Cluster-wide constants that the message bounds cannot carry are refused at start.</summary>
public sealed class ProtocolSettingsTests
{
    private static ProtocolSettings Settings(int watermark, int checkpointInterval) => new()
    {
        N = 3, ReplicaId = 0, Watermark = watermark, CheckpointInterval = checkpointInterval, UsigReissueWindow = 64, UsigMaxBatch = 64,
    };

    [Theory]
    [InlineData(64, 64)]    // the defaults: 256 batches of 256 KiB, 64 MiB
    [InlineData(96, 96)]    // the largest span: 384 batches, 96 MiB (three quarters of a message)
    public void A_view_change_log_of_full_batches_fits_one_message_at_these_constants(int watermark, int checkpointInterval)
    {
        Settings(watermark, checkpointInterval).Validate();
        Assert.Null(MessageLimits.CheckViewChangeSpan(watermark, checkpointInterval));
    }

    [Theory]
    [InlineData(200, 64)]
    [InlineData(64, 200)]
    [InlineData(97, 96)]
    public void Constants_whose_view_change_log_could_outgrow_one_message_are_refused(int watermark, int checkpointInterval)
    {
        var error = Assert.Throws<ArgumentException>(() => Settings(watermark, checkpointInterval).Validate());
        Assert.Contains("must fit one message", error.Message, StringComparison.Ordinal);
    }
}
