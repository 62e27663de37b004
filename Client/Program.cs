namespace MinBft.Client;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("MinBft.Client: the CLI is not implemented yet.");
        return 1;
    }
}
