using MinBft.Client;

namespace MinBft.Tests.Client;

public sealed class KeyValueClientTests
{
    private readonly FakeClusterProxies _cluster = new(new FakeReplicas(f: 1));

    [Fact]
    public async Task PutGetDeleteCompareAndSet_HaveKeyValueSemantics()
    {
        using var client = _cluster.CreateClient();
        var kv = new KeyValueClient(client);
        var v1 = System.Text.Encoding.UTF8.GetBytes("one");
        var v2 = System.Text.Encoding.UTF8.GetBytes("two");

        Assert.Null(await kv.GetAsync("k"));
        await kv.PutAsync("k", v1);
        Assert.Equal(v1, await kv.GetAsync("k"));

        var mismatch = await kv.CompareAndSetAsync("k", v2, v2);
        Assert.False(mismatch.Succeeded);
        Assert.Equal(v1, mismatch.Current);

        var swapped = await kv.CompareAndSetAsync("k", v1, v2);
        Assert.True(swapped.Succeeded);
        Assert.Equal(v2, await kv.GetAsync("k"));

        Assert.False((await kv.CompareAndSetAsync("k", null, v1)).Succeeded);
        Assert.True((await kv.CompareAndSetAsync("new", null, v1)).Succeeded);

        Assert.True(await kv.DeleteAsync("k"));
        Assert.False(await kv.DeleteAsync("k"));
        Assert.Null(await kv.GetAsync("k"));
    }

    [Fact]
    public async Task ResultThatIsNotAKeyValueResult_Throws()
    {
        _cluster.Respond = (request, _) =>
        {
            _cluster.Execute(request);
            var replies = Enumerable.Range(0, 3).Select(i => _cluster.Replicas.Reply(i, request, [0xFF])).ToArray();
            return Task.FromResult(replies);
        };
        using var client = _cluster.CreateClient();

        await Assert.ThrowsAsync<MinBftException>(() => new KeyValueClient(client).GetAsync("k"));
    }
}
